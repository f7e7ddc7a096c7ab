"""Fetching a committed artifact back, checked against its manifest on the way."""

from __future__ import annotations

from pathlib import Path

from backstop.errors import BackupNotFoundError, ChecksumMismatchError, ManifestError
from backstop.manifest import Manifest
from backstop.names import parse_backup_id
from backstop.pipeline import Sink, StreamDigest, decompress_stream
from backstop.ports import BackupStore, NoProgress, Progress


def resolve_backup(store: BackupStore, database: str, ref: str | Manifest) -> Manifest:
    """The manifest of ``ref`` (a backup id, ``latest`` for the newest committed backup, or one already pinned).

    A pinned manifest (the restore workflow's, read at the version its execution recorded) is used as
    it is: what is restored is what was approved, whatever the manifest's key holds now.
    """
    if isinstance(ref, Manifest):
        if ref.database != database:
            raise ManifestError(f"Backup {ref.backup_id} belongs to {ref.database}, not {database}: refused.")
        return ref
    return store.get_manifest(backup_id_of(store, database, ref))


def backup_id_of(store: BackupStore, database: str, ref: str) -> str:
    """The backup id ``ref`` names: itself (checked), or the newest committed backup's for ``latest``."""
    if ref == "latest":
        newest = store.newest_backup_id(database)
        if newest is None:
            raise BackupNotFoundError(
                f"Database {database} has no committed backup yet; run `backstop backup {database}`."
            )
        return newest
    parse_backup_id(ref, database)
    return ref


def expected_digest(manifest: Manifest) -> StreamDigest:
    return StreamDigest(manifest.raw.size, manifest.raw.sha256, manifest.object.size, manifest.object.sha256)


def fetch_artifact(
    store: BackupStore,
    manifest: Manifest,
    dest: Path,
    progress: Progress | None = None,
    *,
    tee: Sink | None = None,
) -> StreamDigest:
    """Download, check and decompress the artifact of ``manifest`` into the file ``dest``.

    Checks, in order: the object exists with the recorded size (a cheap HEAD catches truncation
    before any download), the stored bytes' SHA-256, bounded decompression, the raw SHA-256.
    ``tee``, if given, gets every decompressed chunk too, in order, just after it is written: an
    engine's check can read the archive as it arrives instead of reading the file again afterwards
    (nothing that check concludes holds unless this function returns).
    """
    progress = progress or NoProgress()
    what = f"Backup {manifest.backup_id}"
    size = store.object_size(manifest.object.key, manifest.object.version_id)
    if size is None:
        raise ChecksumMismatchError(f"{what}: its object {manifest.object.key} is missing from the bucket.")
    if size != manifest.object.size:
        raise ChecksumMismatchError(
            f"{what} is {size} bytes in the bucket but the manifest records {manifest.object.size} "
            "(truncated or replaced)."
        )
    progress.start(f"Reading {manifest.backup_id}", manifest.object.size)
    try:
        with dest.open("wb") as out:

            def written(chunk: bytes) -> None:
                out.write(chunk)
                if tee is not None:
                    tee(chunk)

            return decompress_stream(
                store.read_object(manifest.object.key, manifest.object.version_id),
                written,
                algorithm=manifest.compression.algorithm,
                expected=expected_digest(manifest),
                what=what,
                progress=progress.advance,
            )
    finally:
        progress.finish()
