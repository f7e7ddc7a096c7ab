"""The verification sweep: re-read stored backups within a byte budget and compare them with their manifests.

Each run lists every configured database once for its committed backups and stored sizes
(``inventory``) and once for when each was last swept (``sidecar_times``), then reads backups
oldest-unverified first: never swept before anything swept, oldest backup first among those, then
least recently swept. It stops at the first backup that would take the bytes read past the budget,
but always reads at least one: every backup eventually reaches the head of the queue and is then
read whatever its size, so over successive runs the sweep covers every backup and none starves.

A read that fails or disagrees with the manifest is repeated once from scratch (manifest and
object) before anything is declared, so a dropped connection or a one-off bad read is never
reported as corruption. The verdict of every backup read is written beside it as its ``sweep``
sidecar; its time of writing is the order of the next runs. A backup whose manifest cannot be read
gets no record (a sidecar is tagged from its manifest), so it stays at the head of the queue and is
alerted again on every run until someone deals with it.

A backup whose bytes match is then checked for overwritten keys (services/repair.py): its artifact's
key must serve the version the manifest pins, and its manifest's key the version recorded by the
first sweep that verified it (``manifest_version`` in the record, kept across findings). An
overwritten key is alerted (``backup_overwritten``) and, with ``sweep.repair``, repaired.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from backstop.config import Config, Retention, Sweep
from backstop.deadline import NO_DEADLINE, Deadline
from backstop.errors import (
    BackstopError,
    BackupNotFoundError,
    ConfigError,
    DeadlineExceededError,
    IntegrityError,
    StorageError,
)
from backstop.manifest import Manifest
from backstop.names import parse_backup_id
from backstop.ports import BackupStore, Clock, Notifier
from backstop.services.repair import (
    Overwrite,
    RepairReport,
    RepairService,
    find_overwrites,
    lifecycle_due,
    overwrite_sentence,
    swept_manifest_version,
)

log = logging.getLogger(__name__)

DEFAULT_BUDGET = int(Sweep().budget)
SHA_SHOWN = 16  # hex digits of a SHA-256 shown in alerts and messages

Verdict = Literal["passed", "corrupt", "unreadable", "overwritten", "gone"]
"""``gone``: the backup expired (its manifest was removed by retention) between the listing and the read.
``overwritten``: its bytes match, but a key serves another version than the pinned one."""


@dataclass(frozen=True)
class SweepScope:
    """The databases a sweep covers, its default byte budget per run, and what it knows of their retention."""

    databases: tuple[str, ...]
    budget: int = DEFAULT_BUDGET
    repair: bool = False
    """Repair the overwritten keys it finds (``sweep.repair``)."""
    retention: Mapping[str, Retention] = field(default_factory=dict, hash=False)
    """Each database's retention, where known: a delete marker on the artifact of a backup past its tier's
    age is lifecycle's. Without it every delete marker is alerted."""

    @classmethod
    def of(cls, config: Config) -> SweepScope:
        """Every database of ``config``, with the budget and repair setting of its ``sweep`` section."""
        return cls(
            tuple(db.name for db in config.databases),
            int(config.sweep.budget),
            repair=config.sweep.repair,
            retention={db.name: db.retention for db in config.databases},
        )


@dataclass(frozen=True)
class SweptBackup:
    """The verdict on one backup read by the sweep; ``reason`` is the sentence saying what went wrong."""

    database: str
    backup_id: str
    verdict: Verdict
    bytes_read: int
    retried: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class SweepTally:
    """Counts of a sweep, for all databases or one."""

    checked: int
    bytes_read: int
    passed: int
    corrupt: int
    unreadable: int
    overwritten: int


@dataclass(frozen=True)
class SweepReport:
    """What one sweep read and found, and how much of the vault has been swept at least once."""

    checked_at: datetime
    budget: int
    databases: tuple[str, ...]
    swept: tuple[SweptBackup, ...]
    skipped: int
    """Committed backups left for later runs because the budget was spent."""
    committed: int
    covered: int
    """Committed backups with a sweep record, this run's included."""
    unlisted: dict[str, str] = field(default_factory=dict)
    """Databases whose backups could not be listed, with the reason: none of their backups was read."""
    timed_out: str | None = None
    """Why the sweep stopped at its deadline, before its budget was spent (its ``skipped`` backups wait for the next
    run); None when it did not."""

    def _ids(self, verdict: Verdict) -> tuple[str, ...]:
        return tuple(s.backup_id for s in self.swept if s.verdict == verdict)

    @property
    def passed(self) -> tuple[str, ...]:
        return self._ids("passed")

    @property
    def corrupt(self) -> tuple[str, ...]:
        return self._ids("corrupt")

    @property
    def unreadable(self) -> tuple[str, ...]:
        return self._ids("unreadable")

    @property
    def overwritten(self) -> tuple[str, ...]:
        return self._ids("overwritten")

    def tally(self, database: str | None = None) -> SweepTally:
        """Counts of the whole sweep, or of ``database`` only."""
        swept = [s for s in self.swept if database is None or s.database == database]
        verdicts = Counter(s.verdict for s in swept)
        return SweepTally(
            checked=sum(1 for s in swept if s.verdict != "gone"),
            bytes_read=sum(s.bytes_read for s in swept),
            passed=verdicts["passed"],
            corrupt=verdicts["corrupt"],
            unreadable=verdicts["unreadable"],
            overwritten=verdicts["overwritten"],
        )

    def to_dict(self) -> dict[str, object]:
        """The report as JSON-able data (the function's result and ``backstop sweep --json``)."""
        total = self.tally()
        return {
            "checked_at": self.checked_at.isoformat(),
            "budget": self.budget,
            "checked": total.checked,
            "bytes_read": total.bytes_read,
            "passed": list(self.passed),
            "corrupt": list(self.corrupt),
            "unreadable": list(self.unreadable),
            "overwritten": list(self.overwritten),
            "skipped": self.skipped,
            "coverage": {"covered": self.covered, "committed": self.committed},
            "unlisted": dict(self.unlisted),
            "timed_out": self.timed_out,
            "backups": [
                {
                    "database": s.database,
                    "backup_id": s.backup_id,
                    "verdict": s.verdict,
                    "bytes_read": s.bytes_read,
                    "retried": s.retried,
                    "reason": s.reason,
                }
                for s in self.swept
            ],
        }


@dataclass(frozen=True)
class _Candidate:
    database: str
    backup_id: str
    stored_size: int
    last_swept: datetime | None

    @property
    def priority(self) -> tuple[bool, datetime, datetime, str]:
        # Never swept first (False sorts first), oldest backup first among those; then least recently swept.
        taken_at = parse_backup_id(self.backup_id)[1]
        swept_at = self.last_swept or taken_at  # unused among the never swept: they all sort on taken_at
        return (self.last_swept is not None, swept_at, taken_at, self.backup_id)


@dataclass(frozen=True)
class _Reading:
    """One attempt at reading a backup: what arrived, and whether it matched its manifest."""

    outcome: Literal["match", "mismatch", "error", "gone", "overwritten"]
    bytes_read: int
    manifest: Manifest | None = None
    size: int | None = None
    sha256: str | None = None
    reason: str | None = None
    manifest_version: str | None = None
    """The manifest version the sweep vouches for: the one it verified first, else the one read now."""
    overwrites: tuple[Overwrite, ...] = ()


class SweepService:
    """Re-reads committed backups within a byte budget, oldest-unverified first, and alerts on what does not match."""

    def __init__(
        self,
        config: Config | SweepScope,
        store: BackupStore,
        notifier: Notifier,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        """``deadline``: when a sweep in a function must stop, a margin before the function's timeout."""
        self._scope = config if isinstance(config, SweepScope) else SweepScope.of(config)
        self._store = store
        self._notifier = notifier
        self._clock = clock
        self._deadline = deadline

    def run(self, budget: int | None = None) -> SweepReport:
        """Read backups in sweep order until ``budget`` bytes (default: the configured one) are spent.

        Publishes ``backup_corrupt`` and ``backup_unreadable`` alerts naming each backup found so,
        and writes every verdict to the backup's sweep sidecar. A database that cannot be listed is
        reported in ``unlisted`` and the others are still swept; StorageError if a sweep record
        cannot be written, ConfigError for a budget below one byte. Past the deadline the sweep stops
        between two backups, or in the middle of reading one, which then gets no verdict: the report
        says so in ``timed_out``, one ``sweep_timed_out`` alert is published, and the backups not read
        are first in line for the next run.
        """
        budget = self._scope.budget if budget is None else budget
        if budget < 1:
            raise ConfigError(f"The sweep budget is {budget} bytes: give at least one byte, such as 1GiB.")
        checked_at = self._clock()
        queue, unlisted = self._queue()
        covered = {c.backup_id for c in queue if c.last_swept is not None}
        swept: list[SweptBackup] = []
        bytes_read = 0
        timed_out: str | None = None
        for candidate in queue:
            if swept and bytes_read + candidate.stored_size > budget:
                break
            try:
                self._deadline.check("The verification sweep")
                result = self._sweep(candidate)
            except DeadlineExceededError as exc:
                timed_out = str(exc)
                break
            swept.append(result)
            bytes_read += result.bytes_read
            if result.verdict != "gone":
                covered.add(candidate.backup_id)
        report = SweepReport(
            checked_at=checked_at,
            budget=budget,
            databases=self._scope.databases,
            swept=tuple(swept),
            skipped=len(queue) - len(swept),
            committed=len(queue) - sum(1 for s in swept if s.verdict == "gone"),
            covered=len(covered),
            unlisted=unlisted,
            timed_out=timed_out,
        )
        if timed_out is not None:
            self._alert_timed_out(report)
        log.info(
            "sweep read %d backups (%d bytes of a %d budget): %d corrupt, %d unreadable, %d overwritten, "
            "%d left for later runs",
            len(swept),
            bytes_read,
            budget,
            len(report.corrupt),
            len(report.unreadable),
            len(report.overwritten),
            report.skipped,
        )
        return report

    def _alert_timed_out(self, report: SweepReport) -> None:
        log.error("%s", report.timed_out)
        self._notifier.publish(
            "Backstop: the verification sweep stopped at its deadline",
            {
                "event": "sweep_timed_out",
                "databases": list(report.databases),
                "checked": len(report.swept),
                "skipped": report.skipped,
                "message": report.timed_out,
            },
        )

    def _queue(self) -> tuple[list[_Candidate], dict[str, str]]:
        """Every committed backup of the scope in sweep order, from two listings per database."""
        candidates: list[_Candidate] = []
        unlisted: dict[str, str] = {}
        for database in self._scope.databases:
            try:
                sizes = self._store.inventory(database)
                swept_at = self._store.sidecar_times(database, "sweep")
            except StorageError as exc:
                log.error("the backups of %s could not be listed for the sweep: %s", database, exc)
                unlisted[database] = str(exc)
                continue
            candidates += [_Candidate(database, i, size, swept_at.get(i)) for i, size in sizes.items()]
        return sorted(candidates, key=lambda c: c.priority), unlisted

    def _sweep(self, candidate: _Candidate) -> SweptBackup:
        """Read one backup, once more if the first read fails or differs, then alert and record the verdict."""
        committed = self._committed_manifest_version(candidate)
        first = self._read(candidate, committed)
        if first.outcome in ("match", "gone", "overwritten"):
            return self._conclude(candidate, first, first)
        log.warning("sweep: reading %s once more before any verdict: %s", candidate.backup_id, first.reason)
        return self._conclude(candidate, first, self._read(candidate, committed))

    def _committed_manifest_version(self, candidate: _Candidate) -> str | None:
        """The manifest version an earlier sweep verified (none if never swept, or its record is unreadable)."""
        if candidate.last_swept is None:
            return None
        try:
            return swept_manifest_version(self._store, candidate.backup_id)
        except StorageError as exc:
            log.warning("sweep: the record of %s could not be read: %s", candidate.backup_id, exc)
            return None

    def _read(self, candidate: _Candidate, committed: str | None) -> _Reading:
        """Fetch the manifest, stream the object version it names, compare size and SHA-256 with it, and
        check that the backup's keys serve the pinned versions."""
        backup_id = candidate.backup_id
        try:
            # parsing checks the manifest's own checksum
            manifest, manifest_version = self._store.pinned_manifest(backup_id)
        except BackupNotFoundError as exc:
            return _Reading("gone", 0, reason=str(exc))
        except IntegrityError as exc:
            return _Reading("mismatch", 0, reason=str(exc))
        except StorageError as exc:
            return _Reading("error", 0, reason=str(exc))
        expected = manifest.object
        digest = hashlib.sha256()
        size = 0
        try:
            for chunk in self._store.read_object(expected.key, expected.version_id):
                self._deadline.check("The verification sweep")  # raised through: no verdict on a read cut short
                digest.update(chunk)
                size += len(chunk)
        except IntegrityError as exc:  # the version is missing, or fails S3's own checksum
            return _Reading("mismatch", size, manifest, reason=str(exc))
        except StorageError as exc:
            return _Reading("error", size, manifest, reason=str(exc))
        found = digest.hexdigest()
        vouched = committed or manifest_version
        if size == expected.size and found == expected.sha256:
            retention = self._scope.retention.get(candidate.database)
            try:
                expiring = lifecycle_due(manifest, retention, self._clock())
                overwrites = find_overwrites(self._store, manifest, committed, expiring=expiring)
            except StorageError as exc:
                return _Reading("error", size, manifest, reason=str(exc), manifest_version=vouched)
            if overwrites:
                reason = overwrite_sentence(candidate.database, backup_id, overwrites)
                return _Reading("overwritten", size, manifest, size, found, reason, vouched, overwrites)
            return _Reading("match", size, manifest, size, found, manifest_version=vouched)
        reason = (
            f"Backup {backup_id} reads {size} bytes with SHA-256 {found[:SHA_SHOWN]} from {expected.key} "
            f"(version {expected.version_id}), but its manifest records {expected.size} bytes with SHA-256 "
            f"{expected.sha256[:SHA_SHOWN]}: restore from another backup and find out what altered this one."
        )
        return _Reading("mismatch", size, manifest, size, found, reason, vouched)

    def _conclude(self, candidate: _Candidate, first: _Reading, last: _Reading) -> SweptBackup:
        """The verdict of one or two readings: passed if the last matched, corrupt if any differed, else unreadable.

        A backup that read differently from its manifest and could not be read intact on the retry
        is corrupt even if the retry failed to read at all: the one reading that arrived was wrong.
        """
        bytes_read = first.bytes_read + (last.bytes_read if last is not first else 0)
        retried = last is not first
        if last.outcome == "gone":
            log.info("sweep: %s expired before it could be read", candidate.backup_id)
            return SweptBackup(candidate.database, candidate.backup_id, "gone", bytes_read, retried, last.reason)
        if last.outcome == "match":
            assert last.manifest is not None  # a match compared the stream with a manifest
            verdict: dict[str, object] = {"passed": True, "size": last.size, "sha256": last.sha256}
            self._record(last.manifest, verdict, last.manifest_version)
            return SweptBackup(candidate.database, candidate.backup_id, "passed", bytes_read, retried)
        if last.outcome == "overwritten":
            return self._overwritten(candidate, last, bytes_read, retried)
        mismatch = next((r for r in (last, first) if r.outcome == "mismatch"), None)
        if mismatch is not None:
            reason = mismatch.reason or f"Backup {candidate.backup_id} does not match its manifest."
            self._alert_corrupt(candidate, mismatch, reason)
            manifest = mismatch.manifest or last.manifest or first.manifest
            if manifest is not None:
                vouched = mismatch.manifest_version or last.manifest_version or first.manifest_version
                self._record(manifest, {"passed": False, "finding": "corrupt", "reason": reason}, vouched)
            return SweptBackup(candidate.database, candidate.backup_id, "corrupt", bytes_read, retried, reason)
        reason = (
            f"Backup {candidate.backup_id} could not be read on two attempts ({(last.reason or '').rstrip('.')}): "
            "check the bucket's permissions and availability, then run the sweep again."
        )
        self._notifier.publish(
            f"Backstop: backup {candidate.backup_id} is unreadable",
            {
                "event": "backup_unreadable",
                "database": candidate.database,
                "backup_id": candidate.backup_id,
                "found_by": "sweep",
                "message": reason,
            },
        )
        manifest = last.manifest or first.manifest
        if manifest is not None:
            vouched = last.manifest_version or first.manifest_version
            self._record(manifest, {"passed": False, "finding": "unreadable", "reason": reason}, vouched)
        return SweptBackup(candidate.database, candidate.backup_id, "unreadable", bytes_read, retried, reason)

    def _alert_corrupt(self, candidate: _Candidate, mismatch: _Reading, reason: str) -> None:
        expected = mismatch.manifest.object if mismatch.manifest is not None else None
        self._notifier.publish(
            f"Backstop: backup {candidate.backup_id} is corrupt",
            {
                "event": "backup_corrupt",
                "database": candidate.database,
                "backup_id": candidate.backup_id,
                "key": expected.key if expected else None,
                "version_id": expected.version_id if expected else None,
                "expected_size": expected.size if expected else None,
                "found_size": mismatch.size,
                "expected_sha256": expected.sha256[:SHA_SHOWN] if expected else None,
                "found_sha256": mismatch.sha256[:SHA_SHOWN] if mismatch.sha256 else None,
                "found_by": "sweep",
                "message": reason,
            },
        )

    def _overwritten(self, candidate: _Candidate, reading: _Reading, bytes_read: int, retried: bool) -> SweptBackup:
        """Alert an overwritten key (after repairing it, with ``sweep.repair``) and record the finding."""
        assert reading.manifest is not None and reading.reason is not None  # an overwrite is found after a match
        repair: RepairReport | None = None
        repair_failed: str | None = None
        if self._scope.repair:
            try:
                repair = RepairService(self._store).repair(candidate.database, candidate.backup_id)
                bytes_read += repair.bytes_read
            except BackstopError as exc:
                log.error("sweep: the repair of %s failed: %s", candidate.backup_id, exc)
                repair_failed = f"The repair failed: {exc}"
        repaired = repair is not None and repair.repaired
        self._notifier.publish(
            f"Backstop: backup {candidate.backup_id} was overwritten{' and repaired' if repaired else ''}",
            {
                "event": "backup_overwritten",
                "database": candidate.database,
                "backup_id": candidate.backup_id,
                "keys": [o.to_dict() for o in reading.overwrites],
                "found_by": "sweep",
                "message": reading.reason,
                "repaired": repaired,
                "repair": repair.sentence() if repair is not None else repair_failed,
            },
        )
        # A completed repair verified the pinned bytes and made them current: the backup is good again.
        verdict: dict[str, object] = {
            "passed": repair is not None,
            "finding": "overwritten",
            "reason": reading.reason,
            "repaired": repaired,
        }
        self._record(reading.manifest, verdict, reading.manifest_version)
        return SweptBackup(candidate.database, candidate.backup_id, "overwritten", bytes_read, retried, reading.reason)

    def _record(self, manifest: Manifest, verdict: dict[str, object], manifest_version: str | None) -> None:
        document = {"checked_at": self._clock().isoformat(), **verdict, "manifest_version": manifest_version}
        self._store.put_sidecar(manifest, "sweep", document)
