"""The freshness check: each database's newest committed backup against its ``stale_after``.

It costs a few listing requests per database whatever the number of backups (``newest_backup_id``
walks the date folders newest first), and a database whose listing fails is reported and alerted
as ``unknown`` without hiding the state of the others. A newest backup dated after the check (a
wrong clock or a mistyped date wrote it) is never taken as fresh: the database is alerted as
``future-dated`` (clock skew), and its age is that of its newest backup not dated in the future.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from backstop.errors import StorageError
from backstop.names import parse_backup_id
from backstop.ports import BackupStore, Clock, NoNotifier, Notifier
from backstop.services.artifacts import how_far, is_future_dated, newest_not_future_dated

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FreshnessRule:
    """One database to check, the age past which its newest backup is stale, and its drill cadence if it drills.

    A database that drills is overdue when its last successful drill is older than twice the cadence
    (one late or failed drill is tolerated, two are not).
    """

    database: str
    stale_after: timedelta
    drill_every: timedelta | None = None


@dataclass(frozen=True)
class ReplicaCheck:
    """The vault's replica, and how far it may trail the vault (``storage.replica.allowed_lag``)."""

    store: BackupStore
    allowed_lag: timedelta


@dataclass(frozen=True)
class ReplicaFreshness:
    """The newest backup the vault's replica holds of one database, against ``stale_after`` plus the allowed lag."""

    newest_backup: str | None
    age: timedelta | None
    stale_after: timedelta
    error: str | None = None

    @property
    def is_stale(self) -> bool:
        return self.error is not None or self.age is None or self.age > self.stale_after

    @property
    def status(self) -> str:
        if self.error is not None:
            return "unknown"
        if self.age is None:
            return "missing"
        return "stale" if self.is_stale else "fresh"


@dataclass(frozen=True)
class Freshness:
    """What the check found for one database; ``error`` is set when the bucket could not be read.

    ``future_backup`` is a backup dated more than the clock tolerance after the check, and ``ahead``
    how far; ``newest_backup`` and ``age`` are then those of the newest backup not dated in the future.
    """

    database: str
    newest_backup: str | None
    newest_at: datetime | None
    age: timedelta | None
    stale_after: timedelta
    error: str | None = None
    last_drill_at: datetime | None = None
    drill_age: timedelta | None = None
    drill_overdue: bool = False
    future_backup: str | None = None
    ahead: timedelta | None = None
    replica: ReplicaFreshness | None = None
    """Set when the vault has a replica: what the replica holds of this database."""
    drill_every: timedelta | None = None
    """The database's drill cadence, when it drills."""

    @property
    def drill_age_metric(self) -> float | None:
        """``LastSuccessfulDrillAgeSeconds``: the last good drill's age, for a drilled database with a backup.

        A database never drilled counts as age 0 until it is overdue, then as just past twice its
        cadence, which is what its ``<db>-drill-overdue`` alarm compares with.
        """
        if self.drill_every is None or self.age is None:
            return None
        if self.drill_age is not None:
            return self.drill_age.total_seconds()
        return 2 * self.drill_every.total_seconds() + 1 if self.drill_overdue else 0.0

    def as_dict(self) -> dict[str, Any]:
        """What the freshness function returns of this database (seconds as whole numbers)."""
        replica = self.replica
        return {
            "database": self.database,
            "status": self.status,
            "newest_backup": self.newest_backup,
            "age_seconds": _whole(self.age),
            "stale_after_seconds": int(self.stale_after.total_seconds()),
            "drill_age_seconds": _whole(self.drill_age),
            "drill_overdue": self.drill_overdue,
            "future_backup": self.future_backup,
            "ahead_seconds": _whole(self.ahead),
            **(
                {
                    "replica_status": replica.status,
                    "replica_newest_backup": replica.newest_backup,
                    "replica_age_seconds": _whole(replica.age),
                }
                if replica is not None
                else {}
            ),
        }

    @property
    def is_stale(self) -> bool:
        """True when someone must look: stale, missing, future-dated, or not checkable."""
        return (
            self.error is not None or self.future_backup is not None or self.age is None or self.age > self.stale_after
        )

    @property
    def status(self) -> str:
        if self.error is not None:
            return "unknown"
        if self.future_backup is not None:
            return "future-dated"
        if self.age is None:
            return "missing"
        return "stale" if self.is_stale else "fresh"


class FreshnessService:
    """Compares newest backups with their thresholds and alerts on every database that needs a look."""

    def __init__(
        self,
        store: BackupStore,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        notifier: Notifier | None = None,
        replica: ReplicaCheck | None = None,
    ) -> None:
        """``replica``: the vault's replica, checked too."""
        self._store = store
        self._clock = clock
        self._notifier = notifier or NoNotifier()
        self._replica = replica

    def check(self, rules: Sequence[FreshnessRule]) -> list[Freshness]:
        """One entry per rule, in order; publishes one alert per stale, missing, future-dated or unknown database."""
        now = self._clock()
        report = []
        for rule in rules:
            entry = self._check_one(rule, now)
            if rule.drill_every is not None and entry.error is None:
                entry = self._with_drill(entry, rule.drill_every, now)
            if self._replica is not None:
                entry = replace(entry, replica=self._check_replica(self._replica, rule, now))
            report.append(entry)
            if entry.is_stale:
                self._alert(entry)
            if entry.replica is not None and entry.replica.is_stale:
                self._alert_replica(entry, entry.replica)
            if entry.drill_overdue:
                self._alert_drill(entry, rule.drill_every)
        return report

    def _with_drill(self, entry: Freshness, every: timedelta, now: datetime) -> Freshness:
        """``entry`` with the age of its database's last successful drill, and whether it is overdue."""
        entry = replace(entry, drill_every=every)
        try:
            last = self._last_successful_drill(entry.database)
            first = self._store.earliest_backup_since(entry.database, now - timedelta(days=3660)) if not last else None
        except StorageError as exc:
            log.error("the drill records of %s could not be read: %s", entry.database, exc)
            return entry
        if last is not None:
            age = now - last
            return replace(entry, last_drill_at=last, drill_age=age, drill_overdue=age > 2 * every)
        # Never drilled successfully: overdue once the database has had backups for two cadences.
        overdue = first is not None and now - first > 2 * every
        return replace(entry, drill_overdue=overdue)

    def _last_successful_drill(self, database: str) -> datetime | None:
        record = self._store.last_drill_success(database)  # one GET, whatever the number of backups
        return datetime.fromisoformat(str(record["started_at"])) if record else None

    def _alert_drill(self, entry: Freshness, every: timedelta | None) -> None:
        self._notifier.publish(
            f"Backstop: no successful restore drill of {entry.database} lately",
            {
                "event": "drill_overdue",
                "database": entry.database,
                "last_successful_drill": entry.last_drill_at.isoformat() if entry.last_drill_at else None,
                "drill_age_seconds": int(entry.drill_age.total_seconds()) if entry.drill_age else None,
                "drill_every_seconds": int(every.total_seconds()) if every else None,
            },
        )

    def _check_one(self, rule: FreshnessRule, now: datetime) -> Freshness:
        try:
            newest, future = _newest(self._store, rule.database, now)
        except StorageError as exc:
            log.error("the newest backup of %s could not be looked up: %s", rule.database, exc)
            return Freshness(rule.database, None, None, None, rule.stale_after, error=str(exc))
        at = parse_backup_id(newest)[1] if newest else None
        ahead = parse_backup_id(future)[1] - now if future else None
        age = _age(newest, now)
        return Freshness(rule.database, newest, at, age, rule.stale_after, future_backup=future, ahead=ahead)

    def _check_replica(self, replica: ReplicaCheck, rule: FreshnessRule, now: datetime) -> ReplicaFreshness:
        stale_after = rule.stale_after + replica.allowed_lag
        try:
            newest, _future = _newest(replica.store, rule.database, now)  # the vault's check alerts on a future date
        except StorageError as exc:
            log.error("the replica's newest backup of %s could not be looked up: %s", rule.database, exc)
            return ReplicaFreshness(None, None, stale_after, error=str(exc))
        return ReplicaFreshness(newest, _age(newest, now), stale_after)

    def _alert_replica(self, entry: Freshness, replica: ReplicaFreshness) -> None:
        message: dict[str, object] = {
            "event": "replica_stale",
            "database": entry.database,
            "status": replica.status,
            "newest_replicated_backup": replica.newest_backup,
            "age_seconds": int(replica.age.total_seconds()) if replica.age is not None else None,
            "stale_after_seconds": int(replica.stale_after.total_seconds()),
            "newest_backup": entry.newest_backup,
        }
        if replica.error is not None:
            message["message"] = replica.error
        else:
            message["message"] = (
                "The replica has no backup of this database"
                if replica.newest_backup is None
                else f"The replica's newest backup of this database, {replica.newest_backup}, is "
                f"{how_far(replica.age or timedelta(0))} old"
            ) + (
                ": check the vault's replication rule, its role and the replica's key and bucket policy "
                "(docs/storage.md, Second copy)."
            )
        self._notifier.publish(f"Backstop: the replica of {entry.database} is {replica.status}", message)

    def _alert(self, entry: Freshness) -> None:
        if entry.future_backup is not None and entry.error is None:
            self._alert_future(entry)
            return
        message: dict[str, object] = {
            "event": "backup_stale",
            "database": entry.database,
            "status": entry.status,
            "newest_backup": entry.newest_backup,
            "age_seconds": int(entry.age.total_seconds()) if entry.age is not None else None,
            "stale_after_seconds": int(entry.stale_after.total_seconds()),
        }
        if entry.error is not None:
            message["message"] = entry.error
        self._notifier.publish(f"Backstop: backups of {entry.database} are {entry.status}", message)

    def _alert_future(self, entry: Freshness) -> None:
        assert entry.ahead is not None  # set with future_backup
        if entry.newest_backup is None:
            since = "there is no other backup"
        else:
            age = how_far(entry.age) if entry.age is not None else "unknown"
            stale = entry.age is not None and entry.age > entry.stale_after
            since = f"the newest other backup, {entry.newest_backup}, is {age} old" + (
                f", past its stale_after of {how_far(entry.stale_after)}" if stale else ""
            )
        self._notifier.publish(
            f"Backstop: a backup of {entry.database} is dated in the future",
            {
                "event": "backup_clock_skew",
                "database": entry.database,
                "status": entry.status,
                "future_backup": entry.future_backup,
                "ahead_seconds": int(entry.ahead.total_seconds()),
                "newest_backup": entry.newest_backup,
                "age_seconds": int(entry.age.total_seconds()) if entry.age is not None else None,
                "stale_after_seconds": int(entry.stale_after.total_seconds()),
                "message": f"Backup {entry.future_backup} is dated {how_far(entry.ahead)} after this check "
                f"(clock skew, or a wrong date): it is never taken as the latest and {since}; fix the clock or "
                "date of whatever wrote it, then remove it.",
            },
        )


def _newest(store: BackupStore, database: str, now: datetime) -> tuple[str | None, str | None]:
    """The newest backup of ``database`` not dated in the future, and the future-dated one above it if any."""
    newest = store.newest_backup_id(database)
    if newest is not None and is_future_dated(parse_backup_id(newest)[1], now):
        return newest_not_future_dated(store, database, now), newest
    return newest, None


def _age(backup_id: str | None, now: datetime) -> timedelta | None:
    # Within the clock tolerance a backup may be a little ahead of the check: it is not younger than new.
    return max(now - parse_backup_id(backup_id)[1], timedelta(0)) if backup_id else None


def _whole(value: timedelta | None) -> int | None:
    return int(value.total_seconds()) if value is not None else None
