"""The download use case: a committed artifact to a local file, checked against its manifest.

The file appears under its final name only after every check passed; a failed download leaves
nothing behind.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from backstop.manifest import Manifest
from backstop.pipeline import StreamDigest, check_stored
from backstop.ports import Backups, NoProgress, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup


def download(
    store: Backups,
    database: str,
    ref: str | Manifest,
    out: Path,
    *,
    decompress: bool,
    progress: Progress | None = None,
) -> Manifest:
    """Write the artifact of ``ref`` to ``out`` (stored bytes, or decompressed with ``decompress``)."""
    progress = progress or NoProgress()
    manifest = resolve_backup(store, database, ref)
    partial = out.with_name(f".{out.name}.partial")
    try:
        if decompress:
            fetch_artifact(store, manifest, partial, progress)
        else:
            digest, size = hashlib.sha256(), 0
            progress.start(f"Downloading {manifest.backup_id}", manifest.object.size)
            with partial.open("wb") as handle:
                for chunk in store.read_object(manifest.object.key, manifest.object.version_id):
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                    progress.advance(len(chunk))
            progress.finish()
            found = StreamDigest(manifest.raw.size, manifest.raw.sha256, size, digest.hexdigest())
            check_stored(
                found,
                StreamDigest(manifest.raw.size, manifest.raw.sha256, manifest.object.size, manifest.object.sha256),
                f"Backup {manifest.backup_id}",
            )
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return manifest
