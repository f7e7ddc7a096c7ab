"""The verify use case: prove a committed backup is intact and restorable, without restoring it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from backstop.config import Config
from backstop.engines import engine_for
from backstop.errors import IntegrityError
from backstop.manifest import Manifest, TableStat
from backstop.ports import BackupStore, Clock, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup
from backstop.services.repair import (
    OverwrittenKeyError,
    find_overwrites,
    lifecycle_due,
    overwrite_sentence,
    swept_manifest_version,
)


@dataclass(frozen=True)
class VerifyReport:
    """Every check that passed, in order (a failing check raises instead)."""

    manifest: Manifest
    checks: tuple[tuple[str, str], ...]


class VerifyService:
    """Re-reads committed backups and checks them end to end."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        *,
        progress: Progress | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._config = config
        self._store = store
        self._progress = progress
        self._clock = clock

    def verify(self, database: str, ref: str = "latest") -> VerifyReport:
        """Check the manifest's own checksum, the object's size and SHA-256, decompression, the engine check,
        and that the backup's keys still serve the pinned versions (services/repair.py).

        Raises ManifestError, ChecksumMismatchError, DecompressionBombError, OverwrittenKeyError or
        IntegrityError naming what failed.
        """
        db = self._config.database(database)
        manifest = resolve_backup(self._store, database, ref)  # parsing checks the manifest's own checksum
        if manifest.engine != db.engine:
            raise IntegrityError(f"Backup {manifest.backup_id} was taken by engine {manifest.engine}, not {db.engine}.")
        engine = engine_for(db)
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-verify-", dir=self._config.work_dir))
        try:
            raw = run_dir / f"artifact.{engine.artifact}"
            fetch_artifact(self._store, manifest, raw, self._progress)
            inspection = engine.inspect_artifact(raw, manifest, run_dir)
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
        expiring = lifecycle_due(manifest, db.retention, self._clock())
        committed = swept_manifest_version(self._store, manifest.backup_id)
        overwrites = find_overwrites(self._store, manifest, committed, expiring=expiring)
        if overwrites:
            raise OverwrittenKeyError(overwrite_sentence(database, manifest.backup_id, overwrites))
        return VerifyReport(
            manifest=manifest,
            checks=(
                ("manifest checksum", manifest.manifest_sha256[:16]),
                ("stored size", f"{manifest.object.size} bytes"),
                ("stored SHA-256", manifest.object.sha256[:16]),
                ("decompressed", f"{manifest.raw.size} bytes, SHA-256 {manifest.raw.sha256[:16]}"),
                (inspection.integrity.check, inspection.integrity.detail),
                _rows_line(inspection.tables, manifest),
                _current_line(manifest, expiring),
            ),
        )


def _rows_line(counted: dict[str, TableStat], manifest: Manifest) -> tuple[str, str]:
    """What verify proved about rows: SQLite and dumps are counted here; server archives only at restore."""
    if counted:
        return "row counts", f"{len(counted)} tables match the manifest"
    if manifest.tables:
        return "row counts", "compared when the backup is restored"
    return "contents", "match the manifest"


def _current_line(manifest: Manifest, expiring: bool) -> tuple[str, str]:
    """What verify proved about the artifact's key: it serves the pinned version, or lifecycle may be expiring it."""
    key, version_id = manifest.object.key, manifest.object.version_id
    if version_id is None:
        return "current version", f"{key} is not versioned"
    if expiring:
        return "current version", f"{key} serves {version_id} or a delete marker: the backup is past its tier's age"
    return "current version", f"{key} serves {version_id}"
