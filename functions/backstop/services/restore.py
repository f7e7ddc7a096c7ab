"""The local restore use case: verify first, show the plan, keep the old target, swap atomically, validate."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backstop.config import Config
from backstop.engines import local_restore_engine
from backstop.engines.base import Inspection
from backstop.errors import RestoreError
from backstop.manifest import Manifest
from backstop.ports import BackupStore, Clock, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup


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
        putting the old target back if validation fails. The target is never half-restored.
        """
        db = self._config.database(database)
        engine = local_restore_engine(db)
        manifest = resolve_backup(self._store, database, ref)
        target = target.absolute()
        if not target.parent.is_dir():
            raise RestoreError(f"The directory of the restore target {target.parent} does not exist.")
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        exists = target.exists()
        plan = RestorePlan(
            manifest=manifest,
            target=target,
            target_exists=exists,
            current=engine.describe_target(target),
            pre_restore=target.with_name(f"{target.name}.pre-restore-{stamp}") if exists else None,
        )
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-restore-", dir=self._config.work_dir))
        staged = engine.staging_path(target, run_dir, stamp)
        try:
            fetch_artifact(self._store, manifest, staged, self._progress)
            engine.inspect_artifact(staged, manifest, run_dir)
            if dry_run or not confirm(plan):
                return RestoreOutcome(plan=plan, restored=False, inspection=None)
            pre_restore = plan.pre_restore or target.with_name(f"{target.name}.pre-restore-{stamp}")
            inspection = engine.install(staged, target, manifest, pre_restore)
            return RestoreOutcome(plan=plan, restored=True, inspection=inspection)
        finally:
            if staged.exists() and staged.parent != run_dir:
                staged.unlink()
            for suffix in ("-wal", "-shm", "-journal"):
                Path(f"{staged}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(run_dir, ignore_errors=True)
