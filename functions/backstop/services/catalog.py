"""Read-only views of the bucket: list, show, stats and freshness."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from backstop.config import Config
from backstop.manifest import Manifest
from backstop.names import parse_backup_id
from backstop.ports import BackupStore, Clock, NoNotifier, Notifier
from backstop.services.artifacts import resolve_backup


@dataclass(frozen=True)
class DatabaseStats:
    database: str
    count: int
    total_bytes: int
    oldest: datetime | None
    newest: datetime | None
    failed: int


@dataclass(frozen=True)
class Freshness:
    database: str
    newest_backup: str | None
    newest_at: datetime | None
    age: timedelta | None
    stale_after: timedelta

    @property
    def is_stale(self) -> bool:
        return self.age is None or self.age > self.stale_after

    @property
    def status(self) -> str:
        if self.age is None:
            return "missing"
        return "stale" if self.is_stale else "fresh"


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

    def freshness(self) -> list[Freshness]:
        """Each database's newest committed backup against its ``stale_after``; alerts on stale or missing.

        A few list requests per database, whatever the number of backups.
        """
        now = self._clock()
        report = []
        for db in self._config.databases:
            newest = self._store.newest_backup_id(db.name)
            at = parse_backup_id(newest)[1] if newest else None
            entry = Freshness(db.name, newest, at, now - at if at else None, db.stale_after)
            report.append(entry)
            if entry.is_stale:
                self._notifier.publish(
                    f"Backstop: backups of {db.name} are {entry.status}",
                    {
                        "event": "backup_stale",
                        "database": db.name,
                        "status": entry.status,
                        "newest_backup": newest,
                        "age_seconds": int(entry.age.total_seconds()) if entry.age else None,
                        "stale_after_seconds": int(db.stale_after.total_seconds()),
                    },
                )
        return report
