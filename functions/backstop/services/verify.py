"""The verify use case: prove a committed backup is intact and restorable, without restoring it."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from backstop.config import Config
from backstop.engines import engine_for
from backstop.errors import IntegrityError
from backstop.manifest import Manifest, TableStat
from backstop.ports import BackupStore, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup


@dataclass(frozen=True)
class VerifyReport:
    """Every check that passed, in order (a failing check raises instead)."""

    manifest: Manifest
    checks: tuple[tuple[str, str], ...]


class VerifyService:
    """Re-reads committed backups and checks them end to end."""

    def __init__(self, config: Config, store: BackupStore, *, progress: Progress | None = None) -> None:
        self._config = config
        self._store = store
        self._progress = progress

    def verify(self, database: str, ref: str = "latest") -> VerifyReport:
        """Check the manifest's own checksum, the object's size and SHA-256, decompression, and the engine check.

        Raises ManifestError, ChecksumMismatchError, DecompressionBombError or IntegrityError naming
        what failed.
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
        return VerifyReport(
            manifest=manifest,
            checks=(
                ("manifest checksum", manifest.manifest_sha256[:16]),
                ("stored size", f"{manifest.object.size} bytes"),
                ("stored SHA-256", manifest.object.sha256[:16]),
                ("decompressed", f"{manifest.raw.size} bytes, SHA-256 {manifest.raw.sha256[:16]}"),
                (inspection.integrity.check, inspection.integrity.detail),
                _rows_line(inspection.tables, manifest),
            ),
        )


def _rows_line(counted: dict[str, TableStat], manifest: Manifest) -> tuple[str, str]:
    """What verify proved about rows: SQLite and dumps are counted here; server archives only at restore."""
    if counted:
        return "row counts", f"{len(counted)} tables match the manifest"
    if manifest.tables:
        return "row counts", "compared when the backup is restored"
    return "contents", "match the manifest"
