"""Read-only views of the bucket: list, show, stats and freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backstop.config import Config
from backstop.manifest import Manifest
from backstop.names import parse_backup_id
from backstop.ports import BackupStore, Clock, NoNotifier, Notifier
from backstop.services.artifacts import resolve_backup
from backstop.services.freshness import Freshness, FreshnessRule, FreshnessService


@dataclass(frozen=True)
class DatabaseStats:
    database: str
    count: int
    total_bytes: int
    oldest: datetime | None
    newest: datetime | None
    failed: int


class CatalogService:
    """What is in the bucket, database by database."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        notifier: Notifier | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._notifier = notifier or NoNotifier()

    def backups(self, database: str) -> list[Manifest]:
        """Every committed backup of ``database``, oldest first."""
        self._config.database(database)
        return self._store.manifests(database)

    def show(self, database: str, ref: str) -> Manifest:
        self._config.database(database)
        return resolve_backup(self._store, database, ref)

    def stats(self, database: str | None = None) -> list[DatabaseStats]:
        """Count, bytes, oldest, newest and failed runs per database, from listings only."""
        names = [self._config.database(database).name] if database else [db.name for db in self._config.databases]
        result = []
        for name in names:
            sizes = self._store.inventory(name)
            times = sorted(parse_backup_id(backup_id)[1] for backup_id in sizes)
            result.append(
                DatabaseStats(
                    database=name,
                    count=len(sizes),
                    total_bytes=sum(sizes.values()),
                    oldest=times[0] if times else None,
                    newest=times[-1] if times else None,
                    failed=self._store.failure_count(name),
                )
            )
        return result

    def freshness(self, *, lag: timedelta = timedelta(0)) -> list[Freshness]:
        """Each configured database's newest committed backup against its ``stale_after``; alerts on stale or missing.

        ``lag``: how far the store may trail the vault (a replica's ``allowed_lag``), added to every ``stale_after``.
        A few list requests per database, whatever the number of backups.
        """
        rules = [FreshnessRule(db.name, db.stale_after + lag) for db in self._config.databases]
        return FreshnessService(self._store, clock=self._clock, notifier=self._notifier).check(rules)
