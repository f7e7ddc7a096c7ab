"""The backup use case: snapshot, check, compress, hash, upload, verify, then commit the manifest.

A backup exists only once its manifest is written, and the manifest is written only after the
stored object's size and SHA-256 match what was streamed and the engine check passed. Any failure
before that aborts the upload (or deletes the uncommitted version), records the failure and
publishes an alert; the run directory is removed in every case.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import socket
import tempfile
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO

import zstandard

import backstop
from backstop.config import AnyDatabase, Config
from backstop.deadline import NO_DEADLINE, Deadline
from backstop.engines import engine_for
from backstop.engines.base import Engine, Snapshot
from backstop.errors import BackstopError, IntegrityError, StorageError, WorkDirError
from backstop.manifest import BackupType, Compression, Manifest, RawStream, StoredObject, Trigger
from backstop.names import backup_id_for
from backstop.pipeline import StreamDigest, compress_stream, extension, lower_thread_priority
from backstop.ports import BackupStore, Clock, NoNotifier, NoProgress, Notifier, Progress, RunLock, Upload
from backstop.retention import lock_for, tier_for
from backstop.services.artifacts import CLOCK_TOLERANCE, how_far, is_future_dated
from backstop.services.size_anomaly import SizeAnomaly, check_size

log = logging.getLogger(__name__)

RUN_LOCK_TTL = timedelta(hours=12)
"""How long the run lock of a run without a time limit (the command line) lasts if the run dies holding it."""
RUN_LOCK_GRACE = timedelta(seconds=15)
"""How long the run lock of a function outlasts the function's own timeout, when Lambda has ended it for sure.
Under Lambda's one minute before it retries a failed invocation: a retry never finds a dead run's lock."""
RUN_DIR_PREFIX = "backstop-run-"


def run_dir_prefix(database: str, scope: str) -> str:
    """Prefix of a run directory of ``database`` in the run lock's ``scope`` (bucket and prefix).

    Leftovers are removed only under this prefix, while the lock is held: a run of a database of
    the same name for another bucket (another config on the same machine) holds another lock, and
    its live run directory must not match. '.' cannot occur in a name, so no database matches another's.
    """
    digest = hashlib.sha256(f"{scope}/{database}".encode()).hexdigest()[:12]
    return f"{RUN_DIR_PREFIX}{database}.{digest}."


RUN_OWNER_FILE = ".owner"


def _this_process() -> str:
    return f"{socket.gethostname()} {os.getpid()}"


def _owned_by_live_process(run_dir: Path) -> bool:
    """Whether ``run_dir`` was made by a process that is still running on this machine.

    A directory without a readable owner (killed before writing it) is not live.
    """
    try:
        host, pid = (run_dir / RUN_OWNER_FILE).read_text().split()
        if host != socket.gethostname():
            return False
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # the process exists, under another user
        return True
    except (OSError, ValueError):
        return False
    return True


class FutureDatedError(BackstopError):
    """A backup asked for a time further ahead of the service's clock than ``CLOCK_TOLERANCE``.

    Its id would sort after every real backup's for as long as the date is ahead: it would be the
    database's ``latest`` and make the freshness check see a fresh backup.
    """


@dataclass(frozen=True)
class BackupRequest:
    """One backup to take: which database, for which scheduled or requested time, and why."""

    database: str
    at: datetime
    type: BackupType
    trigger: Trigger


@dataclass(frozen=True)
class BackupOutcome:
    """The committed manifest, and whether this run created it (False: it already existed).

    ``warnings`` are sentences for a human about a backup that is committed all the same (its size
    departs from the recent ones: ``size_anomaly``; or that check could not be made).
    """

    manifest: Manifest
    created: bool
    warnings: tuple[str, ...] = ()
    size_anomaly: SizeAnomaly | None = None


class BackupService:
    """Takes backups of configured databases into the store."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        notifier: Notifier | None = None,
        progress: Progress | None = None,
        work_dir: Path | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        """``deadline``: when a run in a function must stop, a margin before the function's timeout: the run then
        fails like any other (upload aborted, lock released, failure recorded and alerted once)."""
        self._config = config
        self._store = store
        self._clock = clock
        self._deadline = deadline
        self._notifier = notifier or NoNotifier()
        self._progress = progress or NoProgress()
        self._work_dir = work_dir or config.work_dir or Path(tempfile.gettempdir())
        self._lock_scope = f"{config.bucket}/{config.prefix}"

    def run(self, request: BackupRequest) -> BackupOutcome:
        """Take the backup of ``request``, or return the existing one for the same time.

        Raises FutureDatedError, before touching the bucket, for a time more than CLOCK_TOLERANCE
        ahead of the service's clock; BackupAlreadyRunningError when another run holds the database's
        lock; any other failure is recorded in the bucket and alerted, then re-raised.
        """
        db = self._config.database(request.database)
        at = request.at.astimezone(UTC).replace(microsecond=0)
        self._refuse_future(db.name, at)
        backup_id = backup_id_for(db.name, at)
        if self._store.manifest_exists(backup_id):
            return BackupOutcome(self._store.get_manifest(backup_id), created=False)
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        lock = self._store.acquire_run_lock(db.name, owner, self._clock(), self._lock_ttl())
        try:
            if self._store.manifest_exists(backup_id):  # committed by a run that just finished
                return BackupOutcome(self._store.get_manifest(backup_id), created=False)
            return self._run_locked(db, request, at, backup_id)
        except Exception as exc:  # every failure is recorded and alerted, expected or not, then re-raised
            self._report_failure(db.name, backup_id, exc)
            raise
        finally:
            self._release(lock)

    def _refuse_future(self, database: str, at: datetime) -> None:
        """FutureDatedError, before anything is read or written, if ``at`` is future-dated on the service's clock."""
        now = self._clock().astimezone(UTC)
        if is_future_dated(at, now):
            raise FutureDatedError(
                f"The backup of {database} for {at:%Y-%m-%dT%H:%M:%SZ} is refused: that time is "
                f"{how_far(at - now)} in the future (the clock here says {now:%Y-%m-%dT%H:%M:%SZ}, and at most "
                f"{how_far(CLOCK_TOLERANCE)} ahead is accepted); check the date, in UTC."
            )

    def _lock_ttl(self) -> timedelta:
        """How long the run lock lasts if this run dies holding it (killed, out of memory).

        In a function: until RUN_LOCK_GRACE after the function's own timeout, when Lambda has ended it
        for sure, so neither Lambda's retry nor the next scheduled run finds a dead run's lock. Without
        a time limit: RUN_LOCK_TTL.
        """
        remaining = self._deadline.remaining()
        if remaining is None:
            return RUN_LOCK_TTL
        return timedelta(seconds=math.ceil(max(0.0, remaining))) + RUN_LOCK_GRACE

    def _release(self, lock: RunLock) -> None:
        """Release the run lock without hiding the run's own outcome; an unreleased lock expires by itself."""
        try:
            self._store.release_run_lock(lock)
        except StorageError as exc:
            log.warning("the backup lock of %s could not be released (it expires by itself): %s", lock.database, exc)

    def _run_locked(self, db: AnyDatabase, request: BackupRequest, at: datetime, backup_id: str) -> BackupOutcome:
        self._remove_leftovers(db.name)
        try:
            run_dir = Path(tempfile.mkdtemp(prefix=run_dir_prefix(db.name, self._lock_scope), dir=self._work_dir))
        except OSError as exc:
            raise WorkDirError(
                f"The work directory {self._work_dir} cannot hold a run ({exc.strerror or exc}); "
                "create it or set work_dir to a writable directory."
            ) from None
        try:
            (run_dir / RUN_OWNER_FILE).write_text(_this_process())
            return self._take(db, engine_for(db), request, at, backup_id, run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _remove_leftovers(self, database: str) -> None:
        """Delete run directories of this database left by a killed run.

        We hold the database's lock, so no live run of it exists in this bucket. A directory of a
        process still alive on this machine belongs to a run against another store of the same
        bucket name (an emulator beside the real account): it is left alone.
        """
        for stale in self._work_dir.glob(run_dir_prefix(database, self._lock_scope) + "*"):
            if _owned_by_live_process(stale):
                continue
            log.warning("removing leftover run directory %s", stale)
            shutil.rmtree(stale, ignore_errors=True)

    def _compress(self, db: AnyDatabase, snapshot: Snapshot, raw: BinaryIO, upload: Upload) -> StreamDigest:
        """Compress, hash and upload the raw stream, to its last part, in a thread of its own; wait for it.

        When the engine check is CPU work in this process (SQLite's integrity_check), that thread and
        the ones it starts (zstd's worker, the upload pool) run at a lower CPU priority: the check
        gates the commit, so it takes the CPU first and compression fills the rest (on two cores
        this keeps the check off the end of the run; see docs/benchmarks.md).
        """
        stop = threading.Event()
        initializer = lower_thread_priority if snapshot.cpu_bound_check else None

        def work() -> StreamDigest:
            digest = compress_stream(
                raw,
                upload.write,
                algorithm=db.compression,
                level=db.level,
                progress=self._progress.advance,
                stop=stop,
                checkpoint=self._deadline.checkpoint(f"The backup of {db.name}"),
            )
            upload.submit_tail()
            return digest

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="compress", initializer=initializer) as pool:
            future = pool.submit(work)
            try:
                return future.result()
            finally:
                stop.set()  # on an interruption here, the thread stops at its next chunk

    def _take(
        self,
        db: AnyDatabase,
        engine: Engine,
        request: BackupRequest,
        at: datetime,
        backup_id: str,
        run_dir: Path,
    ) -> BackupOutcome:
        started = self._clock()
        attempt = uuid.uuid4().hex[:8]
        key = self._store.object_key(backup_id, f"{engine.artifact}.{extension(db.compression)}", attempt)
        self._progress.start(f"Snapshot of {db.name}", None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="check") as checker:
            # The tier's look-ups in the bucket run while the engine connects and takes its snapshot.
            tier_future = checker.submit(lambda: tier_for(at, self._earlier_backups(db.name, at)))
            with engine.snapshot(run_dir) as snapshot:
                self._deadline.check(f"The backup of {db.name}")
                tier = tier_future.result()
                tags = self._store.tags_for(db.name, engine.name, tier)
                lock = lock_for(self._config, db.retention, tier, request.type, started)
                self._progress.start(f"Backing up {db.name}", snapshot.raw_size())
                with self._store.upload(key, tags, lock) as upload:
                    with snapshot.open() as raw:
                        # The engine check reads the snapshot while the pipeline compresses and uploads
                        # it; the upload is completed only if the check passed.
                        inspection_future = checker.submit(snapshot.inspect)
                        digest = self._compress(db, snapshot, raw, upload)
                    inspection = inspection_future.result()
                    if not inspection.integrity.passed:
                        raise IntegrityError(
                            f"The snapshot of {db.name} fails {inspection.integrity.check} "
                            f"({inspection.integrity.detail}); nothing was committed."
                        )
                    # Nothing is committed past the deadline: the margin is for stopping, not for finishing.
                    self._deadline.check(f"The backup of {db.name}")
                    stored = upload.complete()
                self._progress.finish()
        manifest = Manifest(
            backup_id=backup_id,
            database=db.name,
            engine=engine.name,
            type=request.type,
            trigger=request.trigger,
            scheduled_for=at,
            started_at=started,
            finished_at=self._clock(),
            source=snapshot.source,
            tools={"backstop": backstop.__version__, "zstandard": zstandard.__version__, **snapshot.tools},
            object=StoredObject(
                bucket=self._store.bucket,
                key=stored.key,
                version_id=stored.version_id,
                size=stored.size,
                sha256=digest.stored_sha256,
                s3_checksum_sha256=stored.s3_checksum_sha256,
                parts=stored.parts,
                encryption=stored.encryption,
                kms_key_id=stored.kms_key_id,
            ),
            raw=RawStream(size=digest.raw_size, sha256=digest.raw_sha256),
            compression=Compression(algorithm=db.compression, level=db.level),
            integrity=inspection.integrity,
            tables=inspection.tables,
            schema_version=inspection.schema_version,
            retention_tier=tier,
            warnings=tuple(snapshot.warnings),
        ).sealed()
        if not self._store.put_manifest(manifest, tags, lock):
            # Another delivery of the same scheduled run committed first: keep its backup. Ours, under
            # its own key and without a manifest, never counts; its tier's lifecycle rule expires it.
            log.warning("%s was committed by another delivery; the artifact %s is left to lifecycle", backup_id, key)
            return BackupOutcome(self._store.get_manifest(backup_id), created=False)
        log.info("committed backup %s (%d bytes, tier %s)", backup_id, stored.size, tier)
        return self._with_size_check(manifest)

    def _with_size_check(self, manifest: Manifest) -> BackupOutcome:
        """The outcome of a committed backup, with its size compared to the recent ones (alerted if anomalous)."""
        try:
            anomaly = check_size(self._store, manifest)
        except Exception as exc:  # the backup is committed: a check that fails must not make it a failed run
            log.exception("the size check of %s could not be made", manifest.backup_id)
            return BackupOutcome(manifest, created=True, warnings=(f"The size check could not be made: {exc}",))
        if anomaly is None:
            return BackupOutcome(manifest, created=True)
        log.warning("%s", anomaly.sentence())
        how = "larger" if anomaly.kind == "grew" else "smaller"
        self._notifier.publish(f"Backstop: backup of {manifest.database} is far {how} than usual", anomaly.alert())
        return BackupOutcome(manifest, created=True, warnings=(anomaly.sentence(),), size_anomaly=anomaly)

    def _earlier_backups(self, database: str, at: datetime) -> list[datetime]:
        """The first committed backup since the start of the year, month and ISO week of ``at``."""
        day = at.replace(hour=0, minute=0, second=0)
        starts = [day.replace(month=1, day=1), day.replace(day=1), day - timedelta(days=at.weekday())]
        found = (self._store.earliest_backup_since(database, start) for start in starts)
        return [t for t in found if t is not None]

    def _report_failure(self, database: str, backup_id: str, error: Exception) -> None:
        self._progress.finish()
        log.error("backup %s failed: %s", backup_id, error)
        attempt = 1
        try:
            attempt = self._store.record_failure(database, backup_id, self._clock(), error)
        except Exception:  # the original failure is what the caller must see
            log.exception("could not record the failure of %s", backup_id)
        if attempt > 1:
            # Lambda's retry of the same scheduled run: its first failure was alerted, and if the
            # retries fail too, the failure-alert function reports that they gave up.
            log.warning("backup %s failed again (attempt %d); its first failure was alerted", backup_id, attempt)
            return
        self._notifier.publish(
            f"Backstop: backup of {database} failed",
            {
                "event": "backup_failed",
                "database": database,
                "backup_id": backup_id,
                "error": type(error).__name__,
                "message": str(error),
            },
        )
