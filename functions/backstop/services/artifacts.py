"""Fetching a committed artifact back, checked against its manifest on the way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backstop.errors import BackupNotFoundError, ChecksumMismatchError, ManifestError
from backstop.manifest import Manifest
from backstop.names import backup_id_for, parse_backup_id
from backstop.pipeline import Sink, StreamDigest, decompress_stream
from backstop.ports import Backups, NoProgress, Progress

CLOCK_TOLERANCE = timedelta(minutes=5)
"""How far after this clock a backup may be dated: clocks of machines differ by seconds, not minutes.

A backup dated later than that is future-dated: the backup service refuses to take one, ``latest``
never picks one, and the freshness check alerts on one as clock skew.
"""


def is_future_dated(at: datetime, now: datetime) -> bool:
    """Whether a backup dated ``at`` lies beyond ``CLOCK_TOLERANCE`` after ``now``."""
    return at > now + CLOCK_TOLERANCE


def how_far(span: timedelta) -> str:
    """``2 days``, ``26958 days 11 hours``, ``5 minutes 1 second``: ``span`` in its two largest units, whole."""
    left = max(int(span.total_seconds()), 0)
    parts: list[str] = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, left = divmod(left, size)
        if count or parts:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
        if len(parts) == 2:
            break
    kept = [part for part in parts if not part.startswith("0 ")]
    return " ".join(kept) or "0 seconds"


def newest_backup_id(store: Backups, database: str, now: datetime) -> str | None:
    """The newest committed backup of ``database`` that is not future-dated at ``now``, if any.

    One look-up when the newest backup is not future-dated (the store's walk, a few requests), one
    more bounded listing when it is: a backup a wrong clock dated in 2099 would otherwise be the
    newest for decades.
    """
    newest = store.newest_backup_id(database)
    if newest is None or not is_future_dated(parse_backup_id(newest)[1], now):
        return newest
    return newest_not_future_dated(store, database, now)


def newest_not_future_dated(store: Backups, database: str, now: datetime) -> str | None:
    """The newest committed backup of ``database`` dated at most ``CLOCK_TOLERANCE`` after ``now`` (one
    listing bounded like ``recent_backup_ids``), for when the newest one is future-dated."""
    bound = backup_id_for(database, now + CLOCK_TOLERANCE + timedelta(seconds=1))
    found = store.recent_backup_ids(database, bound, 1)
    return found[0] if found else None


def resolve_backup(store: Backups, database: str, ref: str | Manifest, *, now: datetime | None = None) -> Manifest:
    """The manifest of ``ref`` (a backup id, ``latest`` for the newest committed backup, or one already pinned).

    A pinned manifest (the restore workflow's, read at the version its execution recorded) is used as
    it is: what is restored is what was approved, whatever the manifest's key holds now. ``now``
    (default: the current time) is when ``latest`` is resolved.
    """
    if isinstance(ref, Manifest):
        if ref.database != database:
            raise ManifestError(f"Backup {ref.backup_id} belongs to {ref.database}, not {database}: refused.")
        return ref
    return store.get_manifest(backup_id_of(store, database, ref, now=now))


def backup_id_of(store: Backups, database: str, ref: str, *, now: datetime | None = None) -> str:
    """The backup id ``ref`` names: itself (checked), or for ``latest`` the newest committed backup's
    that is not future-dated at ``now`` (default: the current time)."""
    if ref == "latest":
        newest = newest_backup_id(store, database, now or datetime.now(UTC))
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
    store: Backups,
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
