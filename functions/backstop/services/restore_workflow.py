"""The restore workflow's steps, one method per state of the state machine (DESIGN.md "Restore workflow").

Each step takes the execution's state (plain JSON: names, ids, keys and numbers, never a secret or a
token) and returns what the next step needs. The state machine owns the order, the timeouts, the
retries and the branches; the steps own the work and raise exception classes whose names the
definition catches (``TargetLockedError``, ``RestoreRejectedError``, ``RollbackFailedError``...).

The target is always one declared for the database (``restore_targets`` in backstop.yaml): the
execution input names it and nothing else is accepted. A restore writes only after a person has
approved with the phrase ``RESTORE <backup_id>``, and only after a safety snapshot of the target was
committed through the normal backup path (type ``pre-restore``, stored under the pseudo-database
``<database>-pre-restore-<target>`` so it never becomes the database's ``latest``).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import shutil
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backstop.config import AnyDatabase, Config, MysqlDatabase, PostgresDatabase
from backstop.config.targets import IN_PLACE, safety_database, target_for
from backstop.deadline import NO_DEADLINE, Deadline
from backstop.engines import engine_for
from backstop.errors import (
    ApprovalInvalidError,
    ApprovalNotPendingError,
    BackstopError,
    BackupNotFoundError,
    IntegrityError,
    ManifestError,
    RestoreError,
)
from backstop.grants import GrantClaims, GrantSigner, check_grant
from backstop.identity import IdentityProof
from backstop.manifest import Manifest, Trigger
from backstop.names import backup_id_for, parse_backup_id
from backstop.ports import BackupStore, Clock, Notifier, PendingApproval, RestoreLedger, RunLock
from backstop.services.artifacts import CLOCK_TOLERANCE, backup_id_of, fetch_artifact
from backstop.services.backup import BackupRequest, BackupService
from backstop.services.restore import RestoreService
from backstop.services.server_restore import ServerRestoreService, ServerTarget

# Assumed restore throughput for the plan's estimate when no restore of this database was measured yet.
DEFAULT_THROUGHPUT_BYTES_PER_S = 50 * 1024 * 1024
# The lock outlives the approval wait by this much, covering snapshot, restore and rollback.
log = logging.getLogger(__name__)

LOCK_MARGIN = timedelta(hours=6)
SOURCE_LOCK_TTL = timedelta(hours=2)
"""How long an in-place restore's hold on the source's backup lock lasts if the execution dies holding it."""
ROLLBACK_FAILED = "rollback failed"
LATEST_CANDIDATES = 3
"""How many backups, newest first, a restore of ``latest`` checks before it gives up (each is downloaded)."""
DRILLS_CONSIDERED = 3
"""How many of a database's most recently drilled backups the plan reads to find a passed drill to measure by."""


class RestoreRejectedError(RestoreError):
    """A person rejected the restore; the target was not touched."""


class WrongConfirmationError(RestoreError):
    """The confirmation phrase did not match; the restore stays pending."""


class SameApproverError(RestoreError):
    """The configuration requires the approver to differ from the requester."""


class RollbackFailedError(RestoreError):
    """The restore failed after the safety snapshot and the rollback failed too: manual intervention needed."""


class RestoreTooLongError(RestoreError):
    """At the speed a drill of the database measured, the restore does not fit in a step: refused before approval."""


class Before(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    before: datetime


class RestoreInput(BaseModel):
    """The execution input, exactly as DESIGN.md gives it; anything else is refused."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: str
    backup: Literal["latest"] | str | Before = "latest"
    target: str
    dry_run: bool = False
    requested_by: str = Field(min_length=1, max_length=200)
    """What the requester says they are: kept as typed, trusted for nothing (see ``identity``)."""
    reason: str = Field(min_length=1, max_length=1000)
    identity: IdentityProof | None = None
    """The requester's signed GetCallerIdentity request (`backstop restore-request`); none from the console."""


def parse_input(data: dict[str, Any]) -> RestoreInput:
    """The validated execution input; RestoreError naming the first problem (e.g. an extra key)."""
    try:
        return RestoreInput.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "input"
        raise RestoreError(f"The restore input is invalid: {where}: {first['msg']}.") from None


def _reason(error: dict[str, Any]) -> str:
    """One line from a caught error: Step Functions gives a Lambda error's Cause as its JSON document."""
    cause = str(error.get("Cause", ""))
    try:
        document = json.loads(cause)
    except ValueError:
        document = None
    if isinstance(document, dict) and "errorMessage" in document:
        cause = str(document["errorMessage"])
    return f"{error.get('Error', 'Error')}: {cause[:500]}"


def _backup_summary(manifest: Manifest, manifest_version: str | None) -> dict[str, Any]:
    """The backup as the execution pins it: every later step reads exactly these versions and bytes."""
    return {
        "backup_id": manifest.backup_id,
        "scheduled_for": manifest.scheduled_for.isoformat(),
        "key": manifest.object.key,
        "size": manifest.object.size,
        "raw_size": manifest.raw.size,
        "sha256": manifest.object.sha256,
        "object_version": manifest.object.version_id,
        "manifest_version": manifest_version,
    }


REFUSED = "refused: no valid approval"
"""The outcome of a restore whose approval grant did not verify (stolen token, forged or replayed grant)."""
RESERVED_NAMES = ("drill-", "refusal-")
"""Audit records of drills and refusals are named so; a restore may not be, so none can write over another."""
GRANT_LIFETIME = timedelta(hours=6)
"""How long an approval stays good for the steps after it: the lock's margin, covering snapshot, restore, rollback."""


def confirmation_phrase(backup_id: str) -> str:
    return f"RESTORE {backup_id}"


class RestoreWorkflow:
    """The steps of one restore execution."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        table: RestoreLedger,
        notifier: Notifier,
        *,
        grants: GrantSigner,
        state_machine_arn: str,
        clock: Clock = lambda: datetime.now(UTC),
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        self._config = config
        self._store = store
        self._table = table
        self._notifier = notifier
        self._grants = grants
        self._state_machine_arn = state_machine_arn
        self._approval_timeout = config.restore.approval_timeout
        self._clock = clock
        self._deadline = deadline

    def within(self, deadline: Deadline) -> RestoreWorkflow:
        """This workflow for one step that must stop at ``deadline``, a margin before its function's timeout.

        A step stopped there raises DeadlineExceededError before it writes: downloads and the safety
        snapshot's upload are checked between chunks, a restore or rollback once more just before the
        engine writes. The state machine routes that clean error like any other (Restore's to
        Rollback), where a Lambda timeout would leave the step half done. The function is built once
        per container; each invocation has its own deadline.
        """
        bound = copy.copy(self)
        bound._deadline = deadline
        return bound

    # -- helpers ------------------------------------------------------------------------------

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _target(self, state: dict[str, Any]) -> AnyDatabase:
        db = self._config.database(state["database"])
        return target_for(db, state["target"])

    def _manifest(self, state: dict[str, Any]) -> Manifest:
        """Exactly the manifest version Resolve pinned, still naming the pinned artifact bytes and version."""
        pinned = state["backup"]
        manifest, _ = self._store.pinned_manifest(pinned["backup_id"], pinned.get("manifest_version"))
        self._check_bound(manifest, state["database"])
        if manifest.object.sha256 != pinned["sha256"] or manifest.object.version_id != pinned.get("object_version"):
            raise ManifestError(
                f"The manifest of {pinned['backup_id']} no longer names the artifact this restore pinned: refused."
            )
        return manifest

    def _check_bound(self, manifest: Manifest, database: str) -> None:
        db = self._config.database(database)
        if manifest.engine != db.engine:
            raise ManifestError(f"Backup {manifest.backup_id} is a {manifest.engine} backup, not {db.engine}: refused.")

    def _require_grant(self, state: dict[str, Any]) -> GrantClaims:
        """The approval grant of this execution, for exactly its target and pinned backup; ApprovalInvalidError."""
        pinned = state["backup"]
        expected = {
            "execution": self._execution_arn(state),
            "database": state["database"],
            "target": state["target"],
            "backup_id": pinned["backup_id"],
            "sha256": pinned["sha256"],
            "object_version": pinned.get("object_version"),
            "manifest_version": pinned.get("manifest_version"),
        }
        return check_grant((state.get("approval") or {}).get("grant"), expected, self._grants, self._now())

    def _execution_arn(self, state: dict[str, Any]) -> str:
        return self._state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{state['execution']}"

    def _require_lock(self, state: dict[str, Any]) -> None:
        held = self._table.holder(state["database"], state["target"]) or {}
        if held.get("owner") != state["execution"]:
            raise ApprovalInvalidError(
                f"refused: {state['execution']} does not hold the lock of {state['database']}/{state['target']}"
            )

    def _timing(self, state: dict[str, Any], step: str, started: datetime) -> dict[str, Any]:
        timings = dict(state.get("timings", {}))
        timings[step] = round((self._now() - started).total_seconds(), 3)
        self._table.update_audit(state["execution"], {"timings": timings})
        return {**state, "timings": timings}

    def _work_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="backstop-workflow-", dir=self._config.work_dir))

    # -- steps --------------------------------------------------------------------------------

    def resolve(self, data: dict[str, Any], execution: str) -> dict[str, Any]:
        """Validate the input, the database and the target; find the backup; open the audit record."""
        started = self._now()
        if execution.startswith(RESERVED_NAMES):
            raise RestoreError(
                f"Execution names starting with {' or '.join(RESERVED_NAMES)} are the audit trail's own."
            )
        request = parse_input(data)
        db = self._config.database(request.database)
        self._target({"database": db.name, "target": request.target})
        manifest, manifest_version = self._resolve_backup(db.name, request.backup)
        self._check_bound(manifest, db.name)
        state: dict[str, Any] = {
            "execution": execution,
            "database": db.name,
            "engine": db.engine,
            "target": request.target,
            "dry_run": request.dry_run,
            "requested_by": request.requested_by,
            "backup": _backup_summary(manifest, manifest_version),
            "latest": request.backup == "latest",
            "timings": {},
        }
        self._table.put_audit(
            execution,
            {
                "started_at": started.isoformat(),
                "database": db.name,
                "target": request.target,
                "requested_by": request.requested_by,
                "reason": request.reason,
                "dry_run": request.dry_run,
                "backup_id": manifest.backup_id,
                "outcome": "running",
                "timings": {},
            },
        )
        return self._timing(state, "resolve", started)

    def _resolve_backup(self, database: str, ref: str | Before) -> tuple[Manifest, str | None]:
        """The manifest the input names and the S3 version it was read from (pinned for every later step)."""
        if isinstance(ref, Before):
            at = ref.before if ref.before.tzinfo else ref.before.replace(tzinfo=UTC)
            # A backup dated in the future is never restored by time: `--before 2099-01-01` means the
            # newest genuine one, as `latest` does (services/artifacts.CLOCK_TOLERANCE).
            at = min(at, self._now() + CLOCK_TOLERANCE)
            bound = backup_id_for(database, at.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1))
            found = self._store.recent_backup_ids(database, bound, 1)
            if not found:
                raise BackupNotFoundError(f"Database {database} has no committed backup at or before {at.isoformat()}.")
            return self._store.pinned_manifest(found[0])
        return self._store.pinned_manifest(backup_id_of(self._store, database, ref))

    def validate_artifact(self, state: dict[str, Any]) -> dict[str, Any]:
        """Download the artifact, check size, SHA-256, decompression and the engine check; nothing is touched.

        For ``latest``, a newest backup that fails its check is alerted and the next older one is
        checked instead (up to LATEST_CANDIDATES in all): the plan then names the backup actually
        chosen. A backup named by id or by time is restored as named or not at all.
        """
        started = self._now()
        manifest = self._manifest(state)
        db = self._config.database(state["database"])
        skipped: list[dict[str, str]] = []
        while True:
            try:
                integrity = self._check_artifact(db, manifest)
                break
            except IntegrityError as exc:
                if not state.get("latest"):
                    raise
                skipped.append({"backup_id": manifest.backup_id, "reason": str(exc)})
                self._alert_broken_latest(state, manifest.backup_id, exc)
                older = self._store.recent_backup_ids(db.name, manifest.backup_id, 1)
                if len(skipped) == 1 and not older:
                    raise  # the only backup there is: its own error says it best
                if not older or len(skipped) >= LATEST_CANDIDATES:
                    raise IntegrityError(
                        f"None of the {len(skipped)} newest backups of {db.name} passes its check "
                        f"(newest: {skipped[0]['backup_id']}: {skipped[0]['reason']}); nothing was restored."
                    ) from None
                manifest, version = self._store.pinned_manifest(older[0])
                self._check_bound(manifest, db.name)
                state = {**state, "backup": _backup_summary(manifest, version)}
        state = {**state, "artifact": {"check": integrity.check, "detail": integrity.detail}}
        if skipped:
            state = {**state, "skipped_backups": skipped}
            self._table.update_audit(state["execution"], {"backup_id": manifest.backup_id, "skipped_backups": skipped})
        return self._timing(state, "validate_artifact", started)

    def _check_artifact(self, db: AnyDatabase, manifest: Manifest) -> Any:
        run_dir = self._work_dir()
        try:
            raw = run_dir / "artifact"
            fetch_artifact(self._store, manifest, raw, self._deadline.progress(f"Checking backup {manifest.backup_id}"))
            return engine_for(db).inspect_artifact(raw, manifest, run_dir).integrity
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)

    def _alert_broken_latest(self, state: dict[str, Any], backup_id: str, error: Exception) -> None:
        log.error("restore %s: the newest backup %s fails its check: %s", state["execution"], backup_id, error)
        self._notifier.publish(
            f"Backstop: backup {backup_id} is corrupt",
            {
                "event": "backup_corrupt",
                "database": state["database"],
                "backup_id": backup_id,
                "error": type(error).__name__,
                "message": str(error),
                "found_by": f"restore {state['execution']} (latest), which tries the next older backup",
            },
        )

    def lock(self, state: dict[str, Any]) -> dict[str, Any]:
        """Take the target's lock for this execution; TargetLockedError when another restore holds it."""
        started = self._now()
        lock = self._table.acquire(
            state["database"], state["target"], state["execution"], started, self._approval_timeout + LOCK_MARGIN
        )
        expires = lock.expires_at.isoformat() if lock.expires_at else None
        return self._timing({**state, "lock": {"owner": lock.owner, "expires_at": expires}}, "lock", started)

    def plan(self, state: dict[str, Any]) -> dict[str, Any]:
        """What the restore will do: backup, target identity and current row counts, safety snapshot, duration.

        The duration is estimated from the speed (raw bytes per second) the newest passed drill of the
        database measured, else from DEFAULT_THROUGHPUT_BYTES_PER_S. A measured estimate longer than a
        Restore step can run (this function's timeout less its margin: the steps share the function)
        is refused here, before approval (RestoreTooLongError), rather than started and rolled back.
        """
        started = self._now()
        manifest = self._manifest(state)
        target = self._target(state)
        current = self._describe(target)
        estimate, measured_by = self._estimate(state["database"], manifest.raw.size)
        self._refuse_too_long(state, estimate, measured_by)
        safety = safety_database(state["database"], state["target"])
        plan = {
            "backup_id": manifest.backup_id,
            "backup_time": manifest.scheduled_for.isoformat(),
            "size": manifest.object.size,
            "raw_size": manifest.raw.size,
            "sha256": manifest.object.sha256,
            "target": state["target"],
            "target_identity": _identity(target),
            "target_exists": current is not None,
            "safety_snapshot": f"{safety} (under {self._config.prefix}/{safety}/)",
            "estimated_seconds": estimate,
            "estimated_from": f"the drill of {measured_by}" if measured_by else "an assumed 50 MiB/s (no drill yet)",
            "rows": {
                name: {"backup": stat.rows, "target": (current or {}).get(name)}
                for name, stat in manifest.tables.items()
            },
            "confirmation": confirmation_phrase(manifest.backup_id),
        }
        self._table.update_audit(state["execution"], {"plan": plan})
        return self._timing({**state, "plan": plan}, "plan", started)

    def _estimate(self, database: str, raw_size: int) -> tuple[int, str | None]:
        """Seconds a restore of ``raw_size`` raw bytes should take, and the drilled backup that measured the speed
        (None: no passed drill could be read, and the speed is assumed)."""
        try:
            drilled = self._store.sidecar_times(database, "drill")
            for backup_id in sorted(drilled, key=drilled.__getitem__, reverse=True)[:DRILLS_CONSIDERED]:
                record = self._store.get_sidecar(backup_id, "drill") or {}
                seconds = record.get("seconds")
                if record.get("passed") is True and isinstance(seconds, int | float) and seconds > 0:
                    rate = self._store.get_manifest(backup_id).raw.size / seconds
                    return max(1, round(raw_size / rate)) if rate > 0 else 1, backup_id
        except BackstopError as exc:  # an estimate is no reason to fail the plan: assume instead
            log.warning("restore plan of %s: no drill to measure by: %s", database, exc)
        return max(1, round(raw_size / DEFAULT_THROUGHPUT_BYTES_PER_S)), None

    def _refuse_too_long(self, state: dict[str, Any], estimate: int, measured_by: str | None) -> None:
        """RestoreTooLongError if a measured estimate does not fit in a Restore step of this function."""
        timeout = self._deadline.timeout
        if measured_by is None or timeout is None:
            return
        step = int(timeout - self._deadline.margin)
        if estimate <= step:
            return
        raise RestoreTooLongError(
            f"The restore of {state['database']} into {state['target']} would take about {estimate} s at the speed "
            f"the drill of {measured_by} measured, more than the {step} s a restore step has (its function's timeout "
            f"is {timeout} s); nothing was touched: {self._deadline.remedy}."
        )

    def _describe(self, target: AnyDatabase) -> dict[str, int] | None:
        if isinstance(target, PostgresDatabase):
            from backstop.engines.postgres import restore_server

            run_dir = self._work_dir()
            try:
                with restore_server(target, run_dir) as server:
                    return server.describe(target.dbname)
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(target, MysqlDatabase):
            from backstop.engines.mysql_restore import restore_server as mysql_server

            run_dir = self._work_dir()
            try:
                with mysql_server(target, run_dir) as server:
                    return server.describe(target.dbname)
            finally:
                shutil.rmtree(run_dir, ignore_errors=True)
        from backstop.engines import local_restore_engine

        return local_restore_engine(target).describe_target(Path(target.path))

    def request_approval(self, state: dict[str, Any]) -> None:
        """Record the pending approval and publish the plan with how to approve or reject.

        The task token is not kept anywhere: the approval component reads it from the execution's
        own history when a person approves, and it authorizes nothing by itself (``check_approval``).
        """
        plan = state["plan"]
        expires = self._now() + self._approval_timeout
        self._table.put_approval(
            PendingApproval(
                execution=state["execution"],
                database=state["database"],
                target=state["target"],
                backup_id=plan["backup_id"],
                requested_by=state["requested_by"],
            ),
            expires,
        )
        self._table.update_audit(state["execution"], {"outcome": "awaiting approval"})
        self._notifier.publish(
            f"Backstop: restore of {state['database']} into {state['target']} awaits approval",
            {
                "event": "restore_approval_requested",
                "execution": state["execution"],
                "database": state["database"],
                "requested_by": state["requested_by"],
                "requester": state.get("requester"),
                "plan": plan,
                "approve": f'backstop approve {state["execution"]} --confirm "{plan["confirmation"]}"',
                "reject": f'backstop reject {state["execution"]} --reason "..."',
                "expires_at": expires.isoformat(),
            },
        )

    def check_approval(self, state: dict[str, Any]) -> dict[str, Any]:
        """After the wait: the answer must be a grant for exactly this execution, target and backup.

        Whatever completed the wait (the approval component, or anyone holding the task token), only a
        grant sealed by the approval component passes; ApprovalInvalidError otherwise, and the target
        is untouched. The approver recorded is the one the grant names, verified by AWS.
        """
        started = self._now()
        claims = self._require_grant(state)
        self._table.update_audit(
            state["execution"],
            {
                "approver": claims.approver_arn,
                "approver_principal": claims.approver,
                "approved_at": claims.approved_at.isoformat(),
                "grant_expires_at": claims.expires_at.isoformat(),
            },
        )
        return self._timing(state, "check_approval", started)

    def safety_snapshot(self, state: dict[str, Any]) -> dict[str, Any]:
        """Back up the target as it is now through the normal backup path (type pre-restore).

        An in-place restore first takes the source database's backup lock, the one its scheduled
        backups take, and holds it until the restore is finished or rolled back: no backup of the
        database runs while it is being replaced (one that fires meanwhile is skipped and alerted),
        and a restore that arrives while a backup runs fails here with BackupAlreadyRunningError,
        which the state machine retries for a while before giving up with the target untouched.
        """
        started = self._now()
        self._require_grant(state)
        self._require_lock(state)
        if state["target"] == IN_PLACE:
            lock = self._store.acquire_run_lock(
                state["database"], f"restore {state['execution']}", started, SOURCE_LOCK_TTL
            )
            state = {**state, "source_lock": {"database": lock.database, "owner": lock.owner, "etag": lock.etag}}
        try:
            return self._safety_snapshot(state, started)
        except BaseException:
            self._release_source_lock(state)
            raise

    def _release_source_lock(self, state: dict[str, Any]) -> None:
        held = state.get("source_lock")
        if held:
            self._store.release_run_lock(RunLock(held["database"], held["owner"], held["etag"]))

    def _safety_snapshot(self, state: dict[str, Any], started: datetime) -> dict[str, Any]:
        target = self._target(state)
        if not _target_exists(self._describe(target), target):
            return self._timing({**state, "safety": None}, "safety_snapshot", started)
        name = safety_database(state["database"], state["target"])
        snapshot_db = target.model_copy(update={"name": name})
        config = self._config.model_copy(update={"databases": (snapshot_db,)})
        outcome = BackupService(config, self._store, clock=self._clock, deadline=self._deadline).run(
            BackupRequest(
                database=name,
                at=started,
                type="pre-restore",
                trigger=Trigger(kind="execution", by=state["execution"]),
            )
        )
        safety = {
            "backup_id": outcome.manifest.backup_id,
            "key": outcome.manifest.object.key,
            "sha256": outcome.manifest.object.sha256,
        }
        self._table.update_audit(state["execution"], {"safety_snapshot": safety})
        return self._timing({**state, "safety": safety}, "safety_snapshot", started)

    def restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """Restore the pinned backup into the target atomically (the engines never leave it half-restored).

        Before anything is written: the grant is valid for exactly this, the execution holds the
        target's lock, and the safety snapshot this execution took exists (or the target still does
        not exist, so there was nothing to snapshot).
        """
        started = self._now()
        self._require_grant(state)
        self._require_lock(state)
        target = self._target(state)
        self._require_safety(state, target)
        what = f"The restore of {state['database']} into {state['target']}"
        self._install(state["database"], self._manifest(state), target, what=what)
        return self._timing(state, "restore", started)

    def _require_safety(self, state: dict[str, Any], target: AnyDatabase) -> None:
        safety = state.get("safety")
        if safety is None:
            if _target_exists(self._describe(target), target):
                raise ApprovalInvalidError(
                    f"refused: {state['target']} exists but this restore took no safety snapshot"
                )
            return
        self._safety_manifest(state)

    def _safety_manifest(self, state: dict[str, Any]) -> Manifest:
        """The safety snapshot this execution took of its target, as it recorded it; ApprovalInvalidError otherwise."""
        safety = state["safety"]
        name = safety_database(state["database"], state["target"])
        if parse_backup_id(safety["backup_id"])[0] != name:
            raise ApprovalInvalidError(f"refused: {safety['backup_id']} is not a safety snapshot of {state['target']}")
        manifest = self._store.get_manifest(safety["backup_id"])
        if manifest.trigger.by != state["execution"] or manifest.object.sha256 != safety.get("sha256"):
            raise ApprovalInvalidError(f"refused: the safety snapshot {safety['backup_id']} is not this restore's")
        return manifest

    def _install(
        self, database: str, manifest: Manifest, target: AnyDatabase, *, what: str, config: Config | None = None
    ) -> None:
        """Restore ``manifest`` into ``target``, unless the deadline passes first (``what`` is the work, for its error).

        Approved before this step: the confirmation only checks, just before the engine writes, that
        the deadline has not passed; the download is checked between chunks.
        """
        config = config or self._config
        progress = self._deadline.progress(what)

        def in_time(_plan: object) -> bool:
            self._deadline.check(what)
            return True

        if isinstance(target, PostgresDatabase | MysqlDatabase):
            ServerRestoreService(config, self._store, clock=self._clock, progress=progress).restore_into(
                database, manifest, target, dry_run=False, confirm=in_time
            )
        else:
            RestoreService(config, self._store, clock=self._clock, progress=progress).restore(
                database, manifest, Path(target.path), dry_run=False, confirm=in_time
            )

    def validate_target(self, state: dict[str, Any]) -> dict[str, Any]:
        """After the restore: the target's rows equal the backup's (the engines validated before swapping too)."""
        started = self._now()
        differences = self._differences(self._target(state), self._manifest(state))
        if differences:
            raise RestoreError(f"The restored target does not match the backup ({'; '.join(differences[:5])}).")
        return self._timing(state, "validate_target", started)

    def _differences(self, target: AnyDatabase, manifest: Manifest) -> list[str]:
        """Tables whose current row count differs from the manifest's exact count."""
        current = self._describe(target) or {}
        expected = {name: stat.rows for name, stat in manifest.tables.items() if stat.exact}
        return [
            f"{name}: {rows} expected, {current.get(name)} found"
            for name, rows in sorted(expected.items())
            if current.get(name) != rows
        ]

    def rollback(self, state: dict[str, Any]) -> dict[str, Any]:
        """Put the safety snapshot back into the target and validate it; RollbackFailedError otherwise.

        Any failure, expected or not (a full disk is an OSError), is a failed rollback: the state
        machine then runs ``finish`` with outcome "rollback failed", which keeps the lock and asks
        for a person. A target that did not exist before and still does not needs no rollback.
        """
        started = self._now()
        safety = state.get("safety")
        target = self._target(state)
        # Refused before the try: a refusal is not a failed rollback, and the lock stays as it is.
        self._require_grant(state)
        self._require_lock(state)
        try:
            if safety is None:
                if _target_exists(self._describe(target), target):
                    raise RestoreError("the target did not exist before the restore and now does (no safety snapshot)")
                return self._timing({**state, "rolled_back": True}, "rollback", started)
            name = safety_database(state["database"], state["target"])
            config = self._config.model_copy(update={"databases": (target.model_copy(update={"name": name}),)})
            snapshot = self._safety_manifest(state)
            self._install(name, snapshot, target, what=f"The rollback of {state['target']}", config=config)
            if self._differences(target, snapshot):
                raise RestoreError("the rolled-back target does not match the safety snapshot")
        except Exception as exc:  # noqa: BLE001 - any failure here is a failed rollback, named in the alert
            raise RollbackFailedError(
                f"Rollback of {state['target']} failed: {exc}; the lock is kept: manual intervention needed."
            ) from None
        return self._timing({**state, "rolled_back": True}, "rollback", started)

    def finish(self, state: dict[str, Any], outcome: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """Close the restore: release the lock (or, after a failed rollback, keep it), audit, publish."""
        reason = _reason(error) if error else None
        if self._table.audit(state["execution"]) is None:  # Resolve itself failed: the input is all there is
            self._table.put_audit(
                state["execution"],
                {
                    "started_at": self._now().isoformat(),
                    "database": str(state.get("database"))[:100],
                    "target": str(state.get("target"))[:100],
                    "requested_by": str(state.get("requested_by"))[:200],
                },
            )
        if outcome == "not restored" and (error or {}).get("Error") == ApprovalInvalidError.__name__:
            outcome = REFUSED
        if outcome == ROLLBACK_FAILED:
            # The target may be neither old nor new: no other restore, and no backup of it in place, until
            # a person has looked. The source's backup lock (in place) expires by itself.
            if state.get("lock"):
                self._table.keep(state["database"], state["target"], state["execution"], reason or outcome)
            self._finish(state, outcome, reason, alert="manual intervention needed")
            return {**state, "outcome": outcome}
        if state.get("lock"):
            self._table.release(state["database"], state["target"], state["execution"])
        self._release_source_lock(state)
        self._finish(state, outcome, reason)
        return {**state, "outcome": outcome}

    def _finish(self, state: dict[str, Any], outcome: str, reason: str | None, alert: str | None = None) -> None:
        with contextlib.suppress(ApprovalNotPendingError):  # a wait that ended without an answer leaves it behind
            self._table.take_approval(state["execution"])
        self._table.update_audit(
            state["execution"], {"outcome": outcome, "failure_reason": reason, "finished_at": self._now().isoformat()}
        )
        failed = outcome not in ("restored", "dry run")
        backup = state.get("backup")  # absent when Resolve itself failed
        self._notifier.publish(
            f"Backstop: restore of {state.get('database')} into {state.get('target')}: {alert or outcome}",
            {
                "event": "restore_failed" if failed else "restore_finished",
                "execution": state["execution"],
                "database": state.get("database"),
                "target": state.get("target"),
                "backup_id": backup.get("backup_id") if isinstance(backup, dict) else None,
                "outcome": outcome,
                "reason": reason,
                "safety_snapshot": (state.get("safety") or {}).get("backup_id"),
            },
        )


def _identity(target: AnyDatabase) -> str:
    if isinstance(target, PostgresDatabase):
        return ServerTarget(target.host, target.port, target.user, target.dbname).display
    if isinstance(target, MysqlDatabase):
        return ServerTarget(target.host, target.port, target.user, target.dbname, scheme="mysql").display
    return str(target.path)


def _target_exists(current: dict[str, int] | None, target: AnyDatabase) -> bool:
    if current is not None:
        return True
    return False if isinstance(target, PostgresDatabase | MysqlDatabase) else Path(target.path).exists()
