"""The local restore use case: verify first, show the plan, keep the old target, swap atomically, validate."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backstop.config import Config
from backstop.config.targets import system_directory
from backstop.engines import local_restore_engine
from backstop.engines.base import Inspection
from backstop.errors import RestoreError
from backstop.manifest import Manifest
from backstop.ports import BackupStore, Clock, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup
from backstop.services.pre_restore import Pruning, local_copy, mark_completed, prune_local


@dataclass(frozen=True)
class RestorePlan:
    """What a restore will do, shown before anything is touched."""

    manifest: Manifest
    target: Path
    target_exists: bool
    current: dict[str, int] | None
    pre_restore: Path | None


@dataclass(frozen=True)
class RestoreOutcome:
    plan: RestorePlan
    restored: bool
    inspection: Inspection | None
    pruned: tuple[str, ...] = ()
    """Older pre-restore copies removed by ``restore.keep_pre_restore`` after this restore succeeded."""
    warnings: tuple[str, ...] = ()


class RestoreService:
    """Restores a verified backup into a local path."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        progress: Progress | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._progress = progress

    def restore(
        self,
        database: str,
        ref: str | Manifest,
        target: Path,
        *,
        dry_run: bool,
        confirm: Callable[[RestorePlan], bool],
    ) -> RestoreOutcome:
        """Restore ``ref`` of ``database`` into ``target``.

        The artifact is downloaded and fully checked next to the target before anything else; then
        ``confirm`` sees the plan (unless ``dry_run``); then the engine swaps it in atomically,
        keeping the old target at ``<target>.pre-restore-<time>``, and validates the result,
        putting the old target back if validation fails. The target is never half-restored. Once it
        succeeded, the target's older copies are pruned by ``restore.keep_pre_restore``
        (``services/pre_restore.py``). A system directory is never a target.
        """
        db = self._config.database(database)
        engine = local_restore_engine(db)
        manifest = resolve_backup(self._store, database, ref)
        target = target.absolute()
        system = system_directory(target)
        if system is not None:
            raise RestoreError(
                f"Refusing to restore into {target}: it is or lies in the system directory {system}; restore into a "
                "place of its own."
            )
        if not target.parent.is_dir():
            raise RestoreError(f"The directory of the restore target {target.parent} does not exist.")
        started = self._clock()
        stamp = started.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        exists = target.exists()
        plan = RestorePlan(
            manifest=manifest,
            target=target,
            target_exists=exists,
            current=engine.describe_target(target),
            pre_restore=local_copy(target, started) if exists else None,
        )
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-restore-", dir=self._config.work_dir))
        staged = engine.staging_path(target, run_dir, stamp)
        try:
            fetch_artifact(self._store, manifest, staged, self._progress)
            engine.inspect_artifact(staged, manifest, run_dir)
            if dry_run or not confirm(plan):
                return RestoreOutcome(plan=plan, restored=False, inspection=None)
            pre_restore = plan.pre_restore or local_copy(target, started)
            inspection = engine.install(staged, target, manifest, pre_restore)
            pruning = self._keep_pre_restore(target, pre_restore, manifest, started)
            return RestoreOutcome(
                plan=plan, restored=True, inspection=inspection, pruned=pruning.pruned, warnings=pruning.warnings
            )
        finally:
            if staged.exists() and staged.parent != run_dir:
                staged.unlink()
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{staged}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)

    def _keep_pre_restore(self, target: Path, copy: Path, manifest: Manifest, started: datetime) -> Pruning:
        """After a restore that succeeded and kept ``copy``: mark it completed, then prune ``target``'s older copies.

        Never raises: the restore has succeeded, whatever happens here is a warning.
        """
        if not os.path.lexists(copy):
            return Pruning()  # the target did not exist: nothing was kept, and nothing is pruned
        try:
            mark_completed(copy, manifest.backup_id, self._clock())
        except OSError as exc:
            return Pruning(
                warnings=(f"{copy} cannot be marked as a completed restore's ({exc.strerror}); none pruned",)
            )
        policy = self._config.restore.keep_pre_restore
        return prune_local(target, policy, self._clock(), started.astimezone(UTC).replace(microsecond=0))
