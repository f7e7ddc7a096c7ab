"""An in-memory ``Backups`` and ``VersionHistory``: the vault bucket's object versions, as ``S3Store`` sees them.

Every key keeps its history (versions with their bytes, tags and Object Lock, and delete markers), and
the fake keeps ``S3Store``'s rules: an upload shows nothing until it completes, and completes only
where no object is current; a manifest is written once; a manifest must describe the backup whose key
it sits at; a version that is gone reads as ChecksumMismatchError; a compliance lock stops a removal.
Listings follow the same paths as the adapter's (day folders newest first, a bounded walk for
``recent_backup_ids``), so their costs and blind spots are the same too.

Faults, besides ``fail_next(method, error)`` on any port method (``tests.fakes.faults``):
``fail_upload_after`` (a part lost mid-stream), ``fail_next("complete_upload", ..., after=True)`` (a
completed upload whose read-back did not match), ``fail_read_after`` (a connection dropped mid-read),
``corrupt`` (bit rot under a version id) and ``drop`` (a version gone without a delete marker).
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from backstop.adapters.s3_store import (
    ARTIFACT_EXTENSION,
    MANIFEST_SUFFIX,
    MIB,
    RECENT_SPARE_DAYS,
    SIDECAR_KINDS,
)
from backstop.errors import BackupNotFoundError, ChecksumMismatchError, ManifestError, StorageError, UploadError
from backstop.manifest import Manifest, Tier
from backstop.names import check_database_name, parse_backup_id
from backstop.ports import LockUntil, ObjectVersion, UploadResult
from backstop.retention import DATABASE_TAG, ENGINE_TAG, TIER_TAG
from tests.fakes.bucket import FakeBucket
from tests.fakes.faults import faulty


@dataclass
class StoredVersion:
    """One entry of a key's history: an object version (``body``) or a delete marker (``body`` None)."""

    version_id: str
    body: bytes | None
    last_modified: datetime
    tags: dict[str, str] = field(default_factory=dict)
    lock: LockUntil | None = None

    @property
    def is_delete_marker(self) -> bool:
        return self.body is None


@dataclass
class _Fault:
    """A fault armed on the next upload or read: ``error`` (None: the usual one) past ``n_bytes``, of ``key`` if set."""

    n_bytes: int
    error: BaseException | None
    key: str | None


def _parts(data: bytes, part_size: int) -> list[bytes]:
    """The parts ``S3Store``'s uploader cuts ``data`` into: full parts, the part size doubled every 1,000
    parts, then the rest (one empty part for an empty stream)."""
    parts: list[bytes] = []
    start = 0
    while len(data) - start >= part_size:
        parts.append(data[start : start + part_size])
        start += part_size
        if len(parts) % 1000 == 0:
            part_size *= 2
    if start < len(data) or not parts:
        parts.append(data[start:])
    return parts


def composite_sha256(parts: list[bytes]) -> str:
    """S3's checksum of a multipart object: the SHA-256 of its parts' SHA-256s, then ``-<parts>``."""
    digests = b"".join(hashlib.sha256(part).digest() for part in parts)
    return f"{base64.b64encode(hashlib.sha256(digests).digest()).decode()}-{len(parts)}"


class FakeUpload:
    """One upload in progress: the bytes written so far, shown to nobody until ``complete``."""

    def __init__(
        self, vault: FakeBackups, key: str, tags: dict[str, str], lock: LockUntil | None, fault: _Fault | None
    ) -> None:
        self._vault = vault
        self.key = key
        self.tags = dict(tags)
        self.lock = lock
        self._fault = fault
        self._body = bytearray()
        self.size = 0

    def write(self, data: bytes) -> None:
        if self._fault is not None and self.size + len(data) > self._fault.n_bytes:
            raise self._fault.error or UploadError(
                f"S3 failed a part of {self.key} after retries (connection lost); the upload was aborted."
            )
        self._body += data
        self.size += len(data)

    def submit_tail(self) -> None:
        pass

    def complete(self) -> UploadResult:
        return self._vault.complete_upload(self)

    @property
    def body(self) -> bytes:
        return bytes(self._body)


class FakeBackups(FakeBucket):
    """The vault's object versions in a dict of key histories (oldest first; the last entry is current).

    ``put_object`` and ``delete_object`` are what any other writer with access to the bucket can do
    (an intruder, a misconfigured job, lifecycle): they bypass the port's rules, as S3 would let them.
    Combines with the other bucket fakes by inheritance (``tests.fakes.bucket``).
    """

    def __init__(
        self, *, prefix: str = "backups", part_size: int = 16 * MIB, kms_key_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.prefix = prefix.strip("/")
        self.part_size = part_size
        self.kms_key_id = kms_key_id
        self.objects: dict[str, list[StoredVersion]] = {}
        """Every key's history, oldest first."""
        self._open_uploads: list[FakeUpload] = []
        self._upload_faults: list[_Fault] = []
        self._read_faults: list[_Fault] = []
        # BackupService writes from its compression thread while another looks up earlier backups.
        self._objects_guard = threading.RLock()

    # -- keys ---------------------------------------------------------------------------------

    def _day_prefix(self, database: str, at: datetime) -> str:
        return f"{self.prefix}/{check_database_name(database)}/{at:%Y/%m/%d}/"

    def object_key(self, backup_id: str, ext: str, attempt: str | None = None) -> str:
        database, at = parse_backup_id(backup_id)
        if attempt is not None and not re.fullmatch(r"[0-9a-f]{8}", attempt):
            raise ValueError(f"attempt {attempt!r} is not 8 hex digits")
        return f"{self._day_prefix(database, at)}{backup_id}.{f'{attempt}.' if attempt else ''}{ext}"

    def manifest_key(self, backup_id: str) -> str:
        database, at = parse_backup_id(backup_id)
        return f"{self._day_prefix(database, at)}{backup_id}{MANIFEST_SUFFIX}"

    @staticmethod
    def tags_for(database: str, engine: str, tier: Tier) -> dict[str, str]:
        return {TIER_TAG: tier, ENGINE_TAG: engine, DATABASE_TAG: database}

    def quarantine_key(self, key: str, version_id: str) -> str:
        return f"{self.prefix}/_quarantine/{key.removeprefix(self.prefix + '/')}/{version_id}"

    # -- what any writer can do (test set-up, not the port) -------------------------------------

    def put_object(
        self, key: str, body: bytes, *, tags: dict[str, str] | None = None, lock: LockUntil | None = None
    ) -> str:
        """Write a new version of ``key`` unconditionally, as any principal allowed to PUT could; its id."""
        return self._add(key, body, tags or {}, lock).version_id

    def delete_object(self, key: str) -> str:
        """Put a delete marker on ``key``, as a plain DELETE does in a versioned bucket; the marker's id."""
        return self._add(key, None, {}, None).version_id

    def open_uploads(self) -> list[str]:
        """Keys of uploads started and neither completed nor aborted (S3's lifecycle rule aborts them)."""
        with self._objects_guard:
            return [upload.key for upload in self._open_uploads]

    def _add(self, key: str, body: bytes | None, tags: dict[str, str], lock: LockUntil | None) -> StoredVersion:
        version = StoredVersion(str(uuid.uuid4()), body, self._s3_time(), dict(tags), lock)
        with self._objects_guard:
            self.objects.setdefault(key, []).append(version)
        return version

    # -- faults -------------------------------------------------------------------------------

    def fail_upload_after(self, n_bytes: int, error: BaseException | None = None) -> None:
        """The next upload raises ``error`` (default: the UploadError of a part S3 failed) from the ``write``
        that takes it past ``n_bytes``; the service's ``with`` then aborts it, as ``S3Store``'s does."""
        self._upload_faults.append(_Fault(n_bytes, error, None))

    def fail_read_after(self, n_bytes: int, error: BaseException | None = None, *, key: str | None = None) -> None:
        """The next ``read_object`` (of ``key``, when given) yields ``n_bytes`` then raises ``error`` (default:
        the StorageError of a dropped connection); the reads after it are whole again."""
        self._read_faults.append(_Fault(n_bytes, error, key))

    def corrupt(self, key: str, version_id: str | None = None, *, replace_with: bytes | None = None) -> None:
        """Change the bytes of one version in place (same id, same recorded checksum): bit rot on the medium.

        Without ``replace_with``, one bit of the middle byte flips (the size stays the same).
        """
        with self._objects_guard:
            version = self._find(key, version_id)
            if version is None or version.body is None:
                raise ValueError(f"no object version {version_id} of {key} to corrupt")
            if replace_with is None:
                body = bytearray(version.body or b"\x00")
                body[len(body) // 2] ^= 0x01
                replace_with = bytes(body)
            version.body = replace_with

    def drop(self, key: str, version_id: str | None = None) -> None:
        """Make one version (every version of ``key`` without ``version_id``) vanish without a delete marker,
        as an expiry or an administrator's DeleteObjectVersion does."""
        with self._objects_guard:
            history = self.objects.get(key, [])
            kept = [v for v in history if version_id is not None and v.version_id != version_id]
            if len(kept) == len(history):
                raise ValueError(f"no version {version_id} of {key} to drop")
            self.objects[key] = kept

    # -- looking up ---------------------------------------------------------------------------

    def _find(self, key: str, version_id: str | None) -> StoredVersion | None:
        """Exactly ``version_id`` of ``key`` (a delete marker included), or its current version without one."""
        with self._objects_guard:
            history = self.objects.get(key, [])
            if version_id is None:
                return history[-1] if history else None
            return next((v for v in history if v.version_id == version_id), None)

    def _readable(self, key: str, version_id: str | None) -> StoredVersion | None:
        """The object version a GET of ``key`` (at ``version_id``) returns; None for a delete marker or nothing."""
        version = self._find(key, version_id)
        return None if version is None or version.is_delete_marker else version

    def _visible(self, prefix: str, start_after: str = "") -> list[tuple[str, StoredVersion]]:
        """Keys under ``prefix`` whose current version is an object, in key order, as ListObjectsV2 gives them."""
        with self._objects_guard:
            found = [
                (key, history[-1])
                for key, history in self.objects.items()
                if key.startswith(prefix) and key > start_after and history and not history[-1].is_delete_marker
            ]
        return sorted(found, key=lambda entry: entry[0])

    def _day_folders(self, root: str) -> list[str]:
        """The day folders under ``root`` holding any visible key, newest first."""
        days = set()
        for key, _ in self._visible(root):
            segments = key.removeprefix(root).split("/")
            if len(segments) >= 4:
                days.add(root + "/".join(segments[:3]) + "/")
        return sorted(days, reverse=True)

    # -- Backups ------------------------------------------------------------------------------

    @faulty
    def upload(
        self, key: str, tags: dict[str, str], lock: LockUntil | None = None
    ) -> AbstractContextManager[FakeUpload]:
        """A context giving a ``FakeUpload``; an exception in the block aborts it (nothing shows)."""
        self._refuse_on_replica(f"uploading {key}")
        fault = self._upload_faults.pop(0) if self._upload_faults else None
        return self._upload_context(FakeUpload(self, key, tags, lock, fault))

    @contextmanager
    def _upload_context(self, upload: FakeUpload) -> Iterator[FakeUpload]:
        with self._objects_guard:
            self._open_uploads.append(upload)
        try:
            yield upload
        except BaseException:
            self._close(upload)
            raise

    def _close(self, upload: FakeUpload) -> None:
        with self._objects_guard:
            if upload in self._open_uploads:
                self._open_uploads.remove(upload)

    @faulty
    def complete_upload(self, upload: FakeUpload) -> UploadResult:
        """Complete ``upload`` unless an object is current at its key (``If-None-Match: *``); what S3 holds.

        Not a port method: ``FakeUpload.complete`` calls it, so ``fail_next("complete_upload", ...)`` plays
        a completion S3 refused, or with ``after=True`` a completed version whose read-back did not match.
        """
        with self._objects_guard:
            self._close(upload)
            if self._readable(upload.key, None) is not None:
                raise UploadError(
                    f"{upload.key} already exists in the vault; the upload was aborted rather than written over it."
                )
            body = upload.body
            version = self._add(upload.key, body, upload.tags, upload.lock)
        parts = _parts(body, self.part_size)
        return UploadResult(
            key=upload.key,
            version_id=version.version_id,
            size=len(body),
            s3_checksum_sha256=composite_sha256(parts),
            parts=len(parts),
            encryption="aws:kms" if self.kms_key_id else None,
            kms_key_id=self.kms_key_id,
        )

    @faulty
    def delete_version(self, key: str, version_id: str | None) -> None:
        self._refuse_on_replica(f"deleting {key}")
        with self._objects_guard:
            if version_id is None:
                self.delete_object(key)
                return
            version = self._find(key, version_id)
            if version is None:
                return
            if version.lock is not None and version.lock.until > self._clock():
                raise StorageError(f"Deleting {key} (version {version_id}) failed: S3 answered AccessDenied.")
            self.objects[key].remove(version)

    @faulty
    def put_manifest(self, manifest: Manifest, tags: dict[str, str], lock: LockUntil | None = None) -> bool:
        self._refuse_on_replica(f"writing the manifest of {manifest.backup_id}")
        key = self.manifest_key(manifest.backup_id)
        with self._objects_guard:
            if self._readable(key, None) is not None:
                return False
            self._add(key, manifest.to_json(), tags, lock)
        return True

    @faulty
    def get_manifest(self, backup_id: str) -> Manifest:
        return self.pinned_manifest(backup_id)[0]

    @faulty
    def pinned_manifest(self, backup_id: str, version_id: str | None = None) -> tuple[Manifest, str | None]:
        key = self.manifest_key(backup_id)
        version = self._readable(key, version_id)
        if version is None or version.body is None:
            pinned = f" (version {version_id})" if version_id else ""
            raise BackupNotFoundError(
                f"Backup {backup_id}{pinned} has no manifest, so it was never committed (or has expired)."
            )
        manifest = Manifest.from_json(version.body, where=f"s3://{self.bucket}/{key}")
        self._check_bound(manifest, backup_id, key)
        return manifest, version.version_id

    def _check_bound(self, manifest: Manifest, backup_id: str, key: str) -> None:
        """The manifest describes ``backup_id`` and points at its own artifact in this vault (as ``S3Store`` checks)."""
        if manifest.backup_id != backup_id:
            raise ManifestError(f"Manifest at {key} describes {manifest.backup_id}, not {backup_id}.")
        database, at = parse_backup_id(backup_id)
        if manifest.database != database:
            raise ManifestError(f"Manifest at {key} names database {manifest.database}, not {database}.")
        if manifest.object.bucket not in (self.bucket, self.replica_of):
            expected = self.bucket if self.replica_of is None else f"{self.replica_of} (replicated to {self.bucket})"
            raise ManifestError(
                f"Manifest at {key} points at bucket {manifest.object.bucket}, not {expected}: refused."
            )
        stem = self.object_key(backup_id, "")
        ext = manifest.object.key.removeprefix(stem)
        if not manifest.object.key.startswith(stem) or not ARTIFACT_EXTENSION.fullmatch(ext):
            raise ManifestError(
                f"Manifest at {key} points at {manifest.object.key}, not at {backup_id}'s own artifact "
                f"under {self._day_prefix(database, at)}: refused."
            )

    @faulty
    def manifest_exists(self, backup_id: str) -> bool:
        return self._readable(self.manifest_key(backup_id), None) is not None

    def _backup_ids(self, database: str) -> list[str]:
        root = f"{self.prefix}/{check_database_name(database)}/"
        names = (key.rsplit("/", 1)[1] for key, _ in self._visible(root))
        return [name.removesuffix(MANIFEST_SUFFIX) for name in names if name.endswith(MANIFEST_SUFFIX)]

    @faulty
    def manifests(self, database: str) -> list[Manifest]:
        return [self.get_manifest(backup_id) for backup_id in self._backup_ids(database)]

    @faulty
    def read_object(self, key: str, version_id: str | None) -> Iterator[bytes]:
        version = self._readable(key, version_id)
        if version is None or version.body is None:
            raise ChecksumMismatchError(
                f"The object {key} (version {version_id}) named by the manifest is missing from the bucket."
            )
        fault = next((f for f in self._read_faults if f.key in (None, key)), None)
        if fault is not None:
            self._read_faults.remove(fault)
        return self._chunks(key, version.body, fault)

    @staticmethod
    def _chunks(key: str, body: bytes, fault: _Fault | None) -> Iterator[bytes]:
        end = len(body) if fault is None else min(fault.n_bytes, len(body))
        for start in range(0, end, MIB):
            yield body[start : min(start + MIB, end)]
        if fault is not None:
            raise fault.error or StorageError(
                f"Reading {key} failed: Connection was closed before we received a valid response."
            )

    @faulty
    def object_size(self, key: str, version_id: str | None) -> int | None:
        version = self._find(key, version_id)
        if version is not None and version.is_delete_marker and version_id is not None:
            raise StorageError(f"Reading {key} failed: S3 answered 405.")  # a HEAD of a delete marker by its id
        return None if version is None or version.body is None else len(version.body)

    @faulty
    def newest_backup_id(self, database: str) -> str | None:
        root = f"{self.prefix}/{check_database_name(database)}/"
        for day in self._day_folders(root):
            ids = [key for key, _ in self._visible(day) if key.endswith(MANIFEST_SUFFIX)]
            if ids:
                return max(ids).rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX)
        return None

    @faulty
    def recent_backup_ids(self, database: str, before: str, limit: int) -> list[str]:
        root = f"{self.prefix}/{check_database_name(database)}/"
        before_day = self._day_prefix(database, parse_backup_id(before, database)[1])
        found: list[str] = []
        day_budget = limit + RECENT_SPARE_DAYS
        for day in self._day_folders(root):
            if day > before_day:
                continue
            if len(found) >= limit or day_budget == 0:
                break
            day_budget -= 1
            names = (key.rsplit("/", 1)[1] for key, _ in self._visible(day) if key.endswith(MANIFEST_SUFFIX))
            ids = (name.removesuffix(MANIFEST_SUFFIX) for name in names)
            found.extend(sorted((i for i in ids if i < before), reverse=True))
        return found[:limit]

    @faulty
    def earliest_backup_since(self, database: str, since: datetime) -> datetime | None:
        root = f"{self.prefix}/{check_database_name(database)}/"
        start = self._day_prefix(database, since - timedelta(days=1))[:-1] + "~"
        for key, _ in self._visible(root, start_after=start):
            if key.endswith(MANIFEST_SUFFIX):
                return parse_backup_id(key.rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX))[1]
        return None

    @faulty
    def inventory(self, database: str) -> dict[str, int]:
        sizes: dict[str, int] = {}
        committed: set[str] = set()
        for key, version in self._visible(f"{self.prefix}/{check_database_name(database)}/"):
            name = key.rsplit("/", 1)[1]
            if name.endswith(MANIFEST_SUFFIX):
                committed.add(name.removesuffix(MANIFEST_SUFFIX))
            elif not name.endswith(tuple(f".{kind}.json" for kind in SIDECAR_KINDS)):
                sizes[name.split(".", 1)[0]] = len(version.body or b"")
        return {backup_id: sizes.get(backup_id, 0) for backup_id in sorted(committed)}

    # -- VersionHistory -----------------------------------------------------------------------

    @faulty
    def current_version(self, key: str) -> ObjectVersion | None:
        version = self._find(key, None)
        if version is None:
            return None
        # S3's HEAD of a key whose current version is a delete marker gives no time.
        modified = None if version.is_delete_marker else version.last_modified
        return ObjectVersion(key, version.version_id, True, version.is_delete_marker, modified)

    @faulty
    def versions(self, key: str) -> list[ObjectVersion]:
        with self._objects_guard:
            history = list(self.objects.get(key, []))
        # As S3 lists them (versions newest first, then delete markers newest first), then ordered like
        # ``S3Store``: current first, then by time to the second, keeping that order within a second.
        listed = [v for v in reversed(history) if not v.is_delete_marker]
        listed += [v for v in reversed(history) if v.is_delete_marker]
        latest = history[-1] if history else None
        entries = [(v is latest, v.last_modified, v) for v in listed]
        return [
            ObjectVersion(key, v.version_id, is_latest, v.is_delete_marker, v.last_modified)
            for is_latest, _, v in sorted(entries, key=lambda entry: entry[:2], reverse=True)
        ]

    def _tagged(self, key: str, version_id: str, what: str) -> StoredVersion:
        version = self._find(key, version_id)
        if version is None or version.is_delete_marker:
            raise StorageError(f"{what} {key} (version {version_id}) failed: S3 answered NoSuchVersion.")
        return version

    @faulty
    def object_tags(self, key: str, version_id: str) -> dict[str, str]:
        return dict(self._tagged(key, version_id, "Reading the tags of").tags)

    @faulty
    def put_object_tags(self, key: str, version_id: str, tags: dict[str, str]) -> None:
        self._refuse_on_replica(f"tagging {key}")
        with self._objects_guard:
            self._tagged(key, version_id, "Tagging").tags = dict(tags)

    @faulty
    def copy_version(self, key: str, version_id: str, dest_key: str) -> None:
        self._refuse_on_replica(f"copying {key} to {dest_key}")
        with self._objects_guard:
            source = self._readable(key, version_id)
            if source is None or source.body is None:
                raise StorageError(
                    f"Copying {key} (version {version_id}) to {dest_key} failed: S3 answered NoSuchVersion."
                )
            self._add(dest_key, source.body, source.tags, None)

    @faulty
    def remove_version(self, version: ObjectVersion) -> None:
        self._refuse_on_replica(f"removing version {version.version_id} of {version.key}")
        key, version_id = version.key, version.version_id
        with self._objects_guard:
            stored = self._find(key, version_id)
            if stored is None:
                return
            lock = stored.lock
            if lock is not None and lock.mode == "COMPLIANCE" and lock.until > self._clock():
                raise StorageError(
                    f"Version {version_id} of {key} is under a compliance-mode Object Lock until "
                    f"{lock.until.isoformat()}: nobody can remove it before then."
                )
            self.objects[key].remove(stored)
