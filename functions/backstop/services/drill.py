"""Restore drills: prove a backup restores by restoring it where nothing real lives, then cleaning up.

A drill picks a committed backup (the newest, or one of the newest ``among`` at random), restores
it exactly as a real restore does (download, checksum, decompression, the engine's integrity
check, row counts equal to the manifest, the configured validation queries), measures how long
that took against the database's RTO, removes what it restored, and records the result in a
sidecar beside the backup (never in its manifest), in the audit table when there is one, and in
an alert when it failed.

SQLite databases and directories are restored into a scratch directory (``drill.path``, else the
run's work space); PostgreSQL and MySQL into a uniquely named database on the drill's scratch
server, always dropped afterwards. A drill never needs approval, so it must never be able to
write anywhere real: the configuration refuses a scratch place that overlaps the source or a
restore target, and the same check runs again here, on the very place about to be written.
"""

from __future__ import annotations

import logging
import random
import shutil
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backstop.config import AnyDatabase, Config, MysqlDatabase, PostgresDatabase, ServerDatabase
from backstop.config.targets import resolve_target
from backstop.deadline import NO_DEADLINE, Deadline
from backstop.errors import BackstopError, ConfigError
from backstop.ports import BackupStore, Clock, Notifier, Progress, RestoreLedger
from backstop.services.artifacts import newest_backup_id

log = logging.getLogger(__name__)


class DrillTargetError(ConfigError):
    """The place a drill would restore into is a source or a restore target: refused."""


@dataclass(frozen=True)
class DrillResult:
    """What one drill proved."""

    database: str
    backup_id: str
    passed: bool
    started_at: datetime
    seconds: float
    rto_seconds: float | None
    within_rto: bool | None
    scratch: str
    detail: str

    def record(self) -> dict[str, Any]:
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        return data


class DrillService:
    """Runs the drill of one database."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        notifier: Notifier,
        *,
        table: RestoreLedger | None = None,
        clock: Clock = lambda: datetime.now(UTC),
        chooser: Callable[[list[str]], str] = random.choice,
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        """``deadline``: when a drill in a function must stop (a margin before the function's timeout); it is checked
        before the restore, between the chunks of its download and before it writes. A drill stopped there failed,
        and cleans up as any failed drill does."""
        self._config = config
        self._store = store
        self._notifier = notifier
        self._table = table
        self._clock = clock
        self._choose = chooser
        self._deadline = deadline

    def run(self, database: str, backup: str | None = None) -> DrillResult:
        """Drill ``database`` with ``backup`` (default: as its drill configuration picks). Never raises for a
        failed drill (the result says why); raises only when no drill can be attempted at all."""
        db = self._config.database(database)
        if db.drill is None:
            raise ConfigError(
                f"Database {db.name} has no drill: a {db.engine} drill needs drill.server, a scratch server."
            )
        backup_id = backup or self._pick(db)
        started = self._clock().astimezone(UTC)
        stamp = f"{started:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        try:
            self._deadline.check(f"The drill of {db.name}")
            scratch = self._drill(db, backup_id, stamp)
            passed, detail = True, f"restored and validated in {scratch}, then removed"
        except DrillTargetError:
            raise
        except BackstopError as exc:
            scratch, passed, detail = "", False, str(exc)
        seconds = (self._clock().astimezone(UTC) - started).total_seconds()
        rto = db.drill.rto.total_seconds() if db.drill.rto else None
        result = DrillResult(
            database=db.name,
            backup_id=backup_id,
            passed=passed,
            started_at=started,
            seconds=round(seconds, 3),
            rto_seconds=rto,
            within_rto=None if rto is None else seconds <= rto,
            scratch=scratch,
            detail=detail,
        )
        self._record(result, stamp)
        return result

    def _pick(self, db: AnyDatabase) -> str:
        assert db.drill is not None  # checked by run
        newest = newest_backup_id(self._store, db.name, self._clock())  # never one dated in the future
        if newest is None:
            raise ConfigError(f"Database {db.name} has no committed backup to drill.")
        if db.drill.pick == "newest" or db.drill.among == 1:
            return newest
        older = self._store.recent_backup_ids(db.name, newest, db.drill.among - 1)
        return self._choose([newest, *older])

    # -- the restore itself ---------------------------------------------------------------------

    def _drill(self, db: AnyDatabase, backup_id: str, stamp: str) -> str:
        if isinstance(db, PostgresDatabase | MysqlDatabase):
            return self._drill_server(db, backup_id, stamp)
        return self._drill_local(db, backup_id, stamp)

    def _drill_local(self, db: AnyDatabase, backup_id: str, stamp: str) -> str:
        from backstop.services.restore import RestoreService

        assert db.drill is not None and not isinstance(db, ServerDatabase)
        if db.drill.path is not None:  # a scratch directory someone chose must be clear of every real place
            self._refuse_real_places(db, db.drill.path.absolute())
        root = db.drill.path or self._config.work_dir or Path(tempfile.gettempdir())
        root.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f"backstop-drill-{db.name}-{stamp}-", dir=root))
        try:
            target = scratch / (f"{db.name}.db" if db.engine == "sqlite" else db.name)
            self._refuse_real_places(db, target)
            RestoreService(self._config, self._store, clock=self._clock, progress=self._checks(db)).restore(
                db.name, backup_id, target, dry_run=False, confirm=self._in_time(db)
            )
            return str(target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _drill_server(self, db: PostgresDatabase | MysqlDatabase, backup_id: str, stamp: str) -> str:
        from backstop.services.server_restore import ServerRestoreService

        assert db.drill is not None
        server = db.drill.server
        name = f"{db.dbname[:30]}_drill_{stamp.replace('-', '_').lower()}"
        scratch = db.model_copy(
            update={
                "host": server.host,
                "port": server.port or db.port,
                "user": server.user,
                "password_secret": server.password_secret,
                "password_env": server.password_env,
                "tls": server.tls,  # the scratch server's own TLS, not the source's
                "tls_ca": server.tls_ca,
                "dbname": name,
                "restore_targets": {},
                "drill": None,
                "validation_queries": db.validation_queries,
            }
        )
        self._refuse_real_places(db, scratch)
        try:
            ServerRestoreService(self._config, self._store, clock=self._clock, progress=self._checks(db)).restore_into(
                db.name, backup_id, scratch, dry_run=False, confirm=self._in_time(db)
            )
            return f"{scratch.host}:{scratch.port}/{name}"
        finally:
            self._drop_scratch(scratch)

    def _checks(self, db: AnyDatabase) -> Progress:
        """The restore's progress: the deadline is checked at every chunk of the download."""
        return self._deadline.progress(f"The drill of {db.name}")

    def _in_time(self, db: AnyDatabase) -> Callable[[object], bool]:
        """The restore's confirmation, just before it writes: yes while the deadline has not passed."""

        def confirm(_plan: object) -> bool:
            self._deadline.check(f"The drill of {db.name}")
            return True

        return confirm

    def _drop_scratch(self, scratch: PostgresDatabase | MysqlDatabase) -> None:
        """Drop the scratch database and anything the restore derived from its name; never raises."""
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-drill-", dir=self._config.work_dir))
        try:
            if isinstance(scratch, PostgresDatabase):
                from backstop.engines.postgres import restore_server as pg_server

                with pg_server(scratch, run_dir) as pg:
                    if pg.exists(scratch.dbname):
                        pg.drop(scratch.dbname)
            else:
                from backstop.engines.mysql_restore import restore_server as mysql_server

                with mysql_server(scratch, run_dir) as my:
                    if my.exists(scratch.dbname):
                        my.drop(scratch.dbname)
        except Exception:
            log.exception("could not drop the drill database %s on %s", scratch.dbname, scratch.host)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _refuse_real_places(self, db: AnyDatabase, target: Path | ServerDatabase) -> None:
        """DrillTargetError if ``target`` is the database's own location or one of its restore targets."""
        real = {"the database itself": db} | {
            f"restore target {name}": resolve_target(db, name, overrides)
            for name, overrides in db.restore_targets.items()
        }
        for what, place in real.items():
            if isinstance(target, Path):
                # The place written and the directory it is in: a scratch directory holding the source is not
                # scratch space (the configuration refuses the same).
                path = Path(getattr(place, "path", "/nonexistent")).absolute()
                if target == path or target.is_relative_to(path) or path.is_relative_to(target):
                    raise DrillTargetError(f"The drill of {db.name} would restore into {what} ({path}); refused.")
            elif isinstance(place, ServerDatabase) and (target.host, target.port) == (place.host, place.port):
                raise DrillTargetError(
                    f"The drill of {db.name} would restore onto the server of {what} ({place.host}:{place.port}); "
                    "refused."
                )

    # -- what it leaves behind ------------------------------------------------------------------

    def _record(self, result: DrillResult, stamp: str) -> None:
        record = result.record()
        try:
            self._store.put_sidecar(self._store.get_manifest(result.backup_id), "drill", record)
            if result.passed:
                self._store.put_last_drill_success(result.database, record)
        except BackstopError:
            log.exception("could not record the drill of %s", result.backup_id)
        if self._table is not None:
            self._table.put_audit(
                f"drill-{result.database}-{stamp}",
                {
                    "started_at": record["started_at"],
                    "database": result.database,
                    "target": "drill",
                    "backup_id": result.backup_id,
                    "requested_by": "schedule",
                    "outcome": "drill passed" if result.passed else "drill failed",
                    "failure_reason": None if result.passed else result.detail,
                    "timings": {"drill": result.seconds},
                },
            )
        if not result.passed:
            log.error("drill of %s with %s failed: %s", result.database, result.backup_id, result.detail)
            self._notifier.publish(
                f"Backstop: restore drill of {result.database} failed",
                {"event": "drill_failed", **record},
            )
        elif result.within_rto is False:
            self._notifier.publish(
                f"Backstop: restore drill of {result.database} took longer than its RTO",
                {"event": "drill_slow", **record},
            )
