"""S3 adapter: keys, verified multipart uploads, manifests, listing, run locks and failure records.

Layout (docs/storage.md)::

    <prefix>/<database>/<YYYY>/<MM>/<DD>/<backup_id>.<ext>            the artifact
    <prefix>/<database>/<YYYY>/<MM>/<DD>/<backup_id>.manifest.json    its commit marker, written last
    <prefix>/_locks/<database>.backup.json                            run lock (conditional write)
    <prefix>/_failures/<database>/<backup_id>.json                    record of a failed run
    <prefix>/_quarantine/<key below prefix>/<version_id>              a version repair took off a backup's key

The multipart uploader is ours rather than s3transfer's because the backup contract needs what
s3transfer does not expose: the SHA-256 of every part as we cut it (sent so S3 verifies each part
on receipt), the composite checksum to compare with HEAD, and the exact VersionId created.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import urlencode

from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError

from backstop.errors import (
    BackupAlreadyRunningError,
    BackupNotFoundError,
    ChecksumMismatchError,
    ManifestError,
    ReadOnlyReplicaError,
    StorageError,
    UploadError,
)
from backstop.manifest import Manifest, Tier
from backstop.names import check_database_name, parse_backup_id
from backstop.ports import LockUntil, ObjectVersion, RunLock, UploadResult
from backstop.retention import DATABASE_TAG, ENGINE_TAG, TIER_TAG

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MANIFEST_SUFFIX = ".manifest.json"
ARTIFACT_EXTENSION = re.compile(r"([0-9a-f]{8}\.)?(sqlite|pgdump|sql|tar)(\.(zst|gz))?")
"""What may follow ``<backup_id>.`` in an artifact's key: the attempt that wrote it (keys written before
attempts were named have none), then the format and compression."""
SidecarKind = Literal["drill", "sweep"]
SIDECAR_KINDS: tuple[SidecarKind, ...] = ("drill", "sweep")
"""Records written next to a committed backup after the fact (its last drill, its last sweep): never
the manifest, which is immutable once committed."""
MIB = 1024 * 1024
_MAX_PARTS = 10_000
# Day folders ``recent_backup_ids`` may list beyond one per wanted backup (days with failed runs only).
RECENT_SPARE_DAYS = 7


_MISSING = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
T = TypeVar("T")


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _call(what: str, call: Callable[[], T], *, absent: frozenset[str] = frozenset()) -> T | None:
    """Run one S3 call: None when S3 answers one of the ``absent`` codes, StorageError on any other failure.

    Every read, listing and lock operation goes through here (or ``_listing``), so no botocore error
    ever reaches a service: they all become one sentence naming ``what`` failed.
    """
    try:
        return call()
    except ClientError as exc:
        if _code(exc) in absent:
            return None
        raise StorageError(f"{what} failed: S3 answered {_code(exc) or 'an error'}.") from None
    except BotoCoreError as exc:
        raise StorageError(f"{what} failed: {exc}.") from None


@contextmanager
def _listing(what: str) -> Iterator[None]:
    """``_call`` for paginated listings, which make their requests lazily while being iterated."""
    try:
        yield
    except ClientError as exc:
        raise StorageError(f"{what} failed: S3 answered {_code(exc) or 'an error'}.") from None
    except BotoCoreError as exc:
        raise StorageError(f"{what} failed: {exc}.") from None


class MultipartUpload:
    """One streaming multipart upload; use through ``S3Store.upload`` so a failure always aborts it.

    ``write`` cuts the stream into parts of ``part_size`` bytes and uploads up to ``concurrency``
    of them at once; the writer blocks when that many are in flight, which bounds memory.
    """

    def __init__(self, store: S3Store, key: str, upload_id: str, lock: LockUntil | None = None) -> None:
        self._store = store
        self.key = key
        self.upload_id = upload_id
        self._lock = lock
        self._buffer = bytearray()
        self._part_size = store.part_size
        self._slots = threading.BoundedSemaphore(store.concurrency)
        self._pool = ThreadPoolExecutor(max_workers=store.concurrency, thread_name_prefix="upload")
        self._futures: list[Future[dict[str, Any]]] = []
        self._failed: Future[dict[str, Any]] | None = None
        self.size = 0

    def write(self, data: bytes) -> None:
        self._raise_failed_part()
        self._buffer += data
        while len(self._buffer) >= self._part_size:
            self._submit(self._part_size)

    def submit_tail(self) -> None:
        """Upload what remains of the stream now; ``complete`` then only has to wait and commit."""
        if self._buffer or not self._futures:
            self._submit(len(self._buffer))

    def _submit(self, size: int) -> None:
        # Wait for a free upload slot before cutting the part, so at most ``concurrency`` parts plus
        # the buffer are in memory, and cut it with a single copy.
        self._slots.acquire()
        with memoryview(self._buffer) as view:
            body = bytes(view[:size])
        del self._buffer[:size]
        number = len(self._futures) + 1
        if number > _MAX_PARTS:
            raise UploadError(f"Upload of {self.key} needs more than {_MAX_PARTS} parts; raise upload.part_size_mb.")
        self.size += len(body)
        # Past 1,000 parts, double the part size: S3 allows parts of different sizes, and this keeps
        # a stream of unknown length (up to terabytes) within the 10,000-part limit.
        if number % 1000 == 0:
            self._part_size *= 2
        try:
            future = self._pool.submit(self._upload_part, number, body)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(self._part_done)
        self._futures.append(future)

    def _part_done(self, future: Future[dict[str, Any]]) -> None:
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self._failed = future

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        # Hashed here, in the worker, so hashing overlaps with compression; S3 checks it on receipt.
        checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
        response = self._store.client.upload_part(
            Bucket=self._store.bucket,
            Key=self.key,
            UploadId=self.upload_id,
            PartNumber=number,
            Body=body,
            ChecksumSHA256=checksum,
        )
        return {"PartNumber": number, "ETag": response["ETag"], "ChecksumSHA256": checksum}

    def _raise_failed_part(self) -> None:
        """Stop the stream at the first failed part instead of compressing the rest for nothing."""
        if self._failed is not None:
            self._part_result(self._failed)

    def _part_result(self, future: Future[dict[str, Any]]) -> dict[str, Any]:
        try:
            return future.result()
        except (ClientError, BotoCoreError) as exc:
            raise UploadError(
                f"S3 failed a part of {self.key} after retries ({exc}); the upload was aborted."
            ) from None

    def complete(self) -> UploadResult:
        """Upload the last part, complete, then HEAD the new version and compare size, checksum and lock.

        The completion is conditional (``If-None-Match: *``, which the vault's bucket policy requires):
        it never writes over an existing key. A completed version that fails the comparison is left
        as it is: without a manifest it never counts as a backup, and its tier's lifecycle rule
        expires it, so no Backstop role needs the right to delete a version.
        """
        self.submit_tail()
        parts = [self._part_result(future) for future in self._futures]
        self._pool.shutdown(wait=True)
        try:
            response = self._store.client.complete_multipart_upload(
                Bucket=self._store.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]  # built above with the right keys
                IfNoneMatch="*",
            )
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and _code(exc) in _CONFLICT:
                raise UploadError(
                    f"{self.key} already exists in the vault; the upload was aborted rather than written over it."
                ) from None
            raise UploadError(f"S3 did not complete the upload of {self.key} ({exc}); it was aborted.") from None
        version_id = response.get("VersionId")
        digests = b"".join(base64.b64decode(part["ChecksumSHA256"]) for part in parts)
        expected = base64.b64encode(hashlib.sha256(digests).digest()).decode()
        result = self._store.check_stored_object(self.key, version_id, self.size, expected, len(parts))
        if self._lock is not None:
            self._store.check_lock(self.key, version_id, self._lock)
        return result

    def abort(self) -> None:
        for future in self._futures:
            future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._store.client.abort_multipart_upload(Bucket=self._store.bucket, Key=self.key, UploadId=self.upload_id)


class S3Store:
    """Everything Backstop keeps in the bucket, behind domain-named methods.

    ``client`` is a boto3 S3 client (built by ``backstop.bootstrap``); the store never creates one.
    """

    def __init__(
        self,
        client: S3Client,
        *,
        bucket: str,
        prefix: str,
        kms_key_id: str | None = None,
        part_size: int = 16 * MIB,
        concurrency: int = 4,
        replica_of: str | None = None,
    ) -> None:
        """``replica_of``: this bucket is the S3 replica of that vault, whose name its manifests carry (replication
        keeps keys and version ids, so every pinned version is found here too); every write to it raises
        ReadOnlyReplicaError before reaching S3."""
        self.client = client
        self.bucket = bucket
        self.replica_of = replica_of
        self.prefix = prefix.strip("/")
        self.kms_key_id = kms_key_id
        self.part_size = part_size
        self.concurrency = concurrency

    def _refuse_on_replica(self, what: str) -> None:
        """ReadOnlyReplicaError before ``what`` (a write) when this store reads a replica."""
        if self.replica_of is not None:
            raise ReadOnlyReplicaError(
                f"s3://{self.bucket} is the replica of s3://{self.replica_of}, which Backstop only reads: {what} "
                "refused."
            )

    # -- keys ---------------------------------------------------------------------------------

    def _day_prefix(self, database: str, at: datetime) -> str:
        return f"{self.prefix}/{check_database_name(database)}/{at:%Y/%m/%d}/"

    def object_key(self, backup_id: str, ext: str, attempt: str | None = None) -> str:
        """Key of the artifact of ``backup_id`` (``ext`` like ``sqlite.zst``) written by ``attempt``.

        Every attempt writes its own key (8 hex digits), never over another's: an attempt that
        completed its upload and died before its manifest leaves a key the retry must not reuse.
        """
        database, at = parse_backup_id(backup_id)
        if attempt is not None and not re.fullmatch(r"[0-9a-f]{8}", attempt):
            raise ValueError(f"attempt {attempt!r} is not 8 hex digits")
        return f"{self._day_prefix(database, at)}{backup_id}.{f'{attempt}.' if attempt else ''}{ext}"

    def manifest_key(self, backup_id: str) -> str:
        """Key of the manifest of ``backup_id``."""
        database, at = parse_backup_id(backup_id)
        return f"{self._day_prefix(database, at)}{backup_id}{MANIFEST_SUFFIX}"

    def sidecar_key(self, backup_id: str, kind: SidecarKind) -> str:
        """Key of the ``kind`` sidecar of ``backup_id``, beside its manifest."""
        return self.manifest_key(backup_id).removesuffix(MANIFEST_SUFFIX) + f".{kind}.json"

    def _lock_key(self, database: str) -> str:
        return f"{self.prefix}/_locks/{check_database_name(database)}.backup.json"

    def _failure_prefix(self, database: str) -> str:
        return f"{self.prefix}/_failures/{check_database_name(database)}/"

    # -- writing ------------------------------------------------------------------------------

    def sse_args(self) -> dict[str, Any]:
        """Server-side encryption arguments for a new object (none: the bucket default applies)."""
        if self.kms_key_id is None:
            return {}
        return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key_id, "BucketKeyEnabled": True}

    @staticmethod
    def tagging(tags: dict[str, str]) -> str:
        return urlencode(sorted(tags.items()))

    @staticmethod
    def tags_for(database: str, engine: str, tier: Tier) -> dict[str, str]:
        """The tags lifecycle rules and operators filter on."""
        return {TIER_TAG: tier, ENGINE_TAG: engine, DATABASE_TAG: database}

    def upload(self, key: str, tags: dict[str, str], lock: LockUntil | None = None) -> _UploadContext:
        """Start a multipart upload of ``key`` (locked until ``lock``); the context aborts it if the block raises."""
        self._refuse_on_replica(f"uploading {key}")
        return _UploadContext(self, key, tags, lock)

    @staticmethod
    def lock_args(lock: LockUntil | None) -> dict[str, Any]:
        if lock is None:
            return {}
        return {"ObjectLockMode": lock.mode, "ObjectLockRetainUntilDate": lock.until}

    def check_lock(self, key: str, version_id: str | None, lock: LockUntil) -> None:
        """Make sure ``version_id`` is locked at least until ``lock`` asks, setting it if S3 did not.

        The lock is requested when the upload starts; S3 applies it on completion. Checked like the
        size and checksum, and set on the version when missing (S3-compatible stores and the emulator
        drop it from multipart uploads); lengthening a retention needs no bypass right.
        """
        head = self.client.head_object(**self._version_args(key, version_id))
        until = head.get("ObjectLockRetainUntilDate")
        if head.get("ObjectLockMode") == lock.mode and until is not None and until >= lock.until:
            return
        _call(
            f"Locking {key}",
            lambda: self.client.put_object_retention(
                **self._version_args(key, version_id),
                Retention={"Mode": lock.mode, "RetainUntilDate": lock.until},
            ),
        )

    def check_stored_object(
        self, key: str, version_id: str | None, size: int, checksum: str, parts: int
    ) -> UploadResult:
        """HEAD exactly ``version_id`` and compare size and composite SHA-256 with what we streamed."""
        try:
            head = self.client.head_object(**self._version_args(key, version_id), ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise UploadError(f"The uploaded object {key} cannot be read back: {exc}.") from None
        stored = head.get("ChecksumSHA256", "")
        value, _, count = stored.partition("-")
        if head["ContentLength"] != size:
            raise ChecksumMismatchError(
                f"S3 holds {head['ContentLength']} bytes for {key} but {size} were streamed; the upload is not trusted."
            )
        if value != checksum or (count and int(count) != parts):
            raise ChecksumMismatchError(
                f"S3's SHA-256 of {key} ({stored or 'none'}) differs from the {parts}-part checksum of what was "
                "streamed; the upload is not trusted."
            )
        return UploadResult(
            key=key,
            version_id=version_id,
            size=size,
            s3_checksum_sha256=stored,
            parts=parts,
            encryption=head.get("ServerSideEncryption"),
            kms_key_id=head.get("SSEKMSKeyId"),
        )

    def delete_version(self, key: str, version_id: str | None) -> None:
        """Remove one object version we created but will not commit (best effort under Object Lock)."""
        self._refuse_on_replica(f"deleting {key}")
        self.client.delete_object(**self._version_args(key, version_id))

    def put_manifest(self, manifest: Manifest, tags: dict[str, str], lock: LockUntil | None = None) -> bool:
        """Commit ``manifest``; False if one already exists for its backup id (never overwritten)."""
        self._refuse_on_replica(f"writing the manifest of {manifest.backup_id}")
        written = _call(
            f"Writing the manifest of {manifest.backup_id}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=self.manifest_key(manifest.backup_id),
                Body=manifest.to_json(),
                ContentType="application/json",
                ChecksumAlgorithm="SHA256",
                IfNoneMatch="*",
                Tagging=self.tagging(tags),
                **self.sse_args(),
                **self.lock_args(lock),
            ),
            absent=_CONFLICT,
        )
        return written is not None

    def put_sidecar(self, manifest: Manifest, kind: SidecarKind, document: dict[str, Any]) -> None:
        """Write (or replace) the ``kind`` record of a committed backup, tagged like it so it expires with it."""
        self._refuse_on_replica(f"writing the {kind} record of {manifest.backup_id}")
        key = self.sidecar_key(manifest.backup_id, kind)
        tags = self.tags_for(manifest.database, manifest.engine, manifest.retention_tier)
        _call(
            f"Writing the {kind} record of {manifest.backup_id}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(document, indent=2, sort_keys=True, default=str).encode(),
                ContentType="application/json",
                Tagging=self.tagging(tags),
                **self.sse_args(),
            ),
        )

    def get_sidecar(self, backup_id: str, kind: SidecarKind) -> dict[str, Any] | None:
        """The ``kind`` record of ``backup_id``, or None if it has none yet."""
        key = self.sidecar_key(backup_id, kind)
        body = self._read(f"Reading the {kind} record of {backup_id}", key)
        if body is None:
            return None
        document = json.loads(body)
        if not isinstance(document, dict):
            raise ManifestError(f"The {kind} record at {key} is not a JSON object.")
        return document

    def drill_success_key(self, database: str) -> str:
        return f"{self.prefix}/_drills/{check_database_name(database)}.last-success.json"

    def put_last_drill_success(self, database: str, record: dict[str, Any]) -> None:
        """Remember ``database``'s last successful drill: one small object the freshness check reads."""
        self._refuse_on_replica(f"recording the last successful drill of {database}")
        key = self.drill_success_key(database)
        _call(
            f"Recording the last successful drill of {database}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=json.dumps(record, sort_keys=True, default=str).encode(),
                ContentType="application/json",
                **self.sse_args(),
            ),
        )

    def last_drill_success(self, database: str) -> dict[str, Any] | None:
        """The record of ``database``'s last successful drill, or None if no drill has passed yet."""
        body = self._read(f"Reading the last successful drill of {database}", self.drill_success_key(database))
        if body is None:
            return None
        record = json.loads(body)
        return record if isinstance(record, dict) else None

    def sidecar_times(self, database: str, kind: SidecarKind) -> dict[str, datetime]:
        """When each backup of ``database`` last got its ``kind`` record, from one listing (no GETs)."""
        suffix = f".{kind}.json"
        found: dict[str, datetime] = {}
        for item in self._listed(f"{self.prefix}/{check_database_name(database)}/"):
            name = str(item["Key"]).rsplit("/", 1)[1]
            if name.endswith(suffix):
                found[name.removesuffix(suffix)] = item["LastModified"]
        return found

    # -- reading ------------------------------------------------------------------------------

    def _read(self, what: str, key: str) -> bytes | None:
        """The current body of ``key``, or None if there is no such object; StorageError otherwise."""
        return _call(what, lambda: self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read(), absent=_MISSING)

    def get_manifest(self, backup_id: str) -> Manifest:
        """The committed manifest of ``backup_id``; BackupNotFoundError if there is none."""
        return self.pinned_manifest(backup_id)[0]

    def pinned_manifest(self, backup_id: str, version_id: str | None = None) -> tuple[Manifest, str | None]:
        """The manifest of ``backup_id`` (exactly ``version_id`` when given) and the S3 version it was read from.

        The manifest is bound to its place: it must describe ``backup_id`` of the database the id names,
        in this bucket, with its artifact at the key derived from the id under that database's own
        prefix. A manifest that points anywhere else (another database's object, another bucket) is a
        ManifestError, whoever wrote it.
        """
        key = self.manifest_key(backup_id)
        args = self._version_args(key, version_id)
        response = _call(
            f"Reading the manifest of {backup_id}", lambda: self.client.get_object(**args), absent=_MISSING
        )
        if response is None:
            pinned = f" (version {version_id})" if version_id else ""
            raise BackupNotFoundError(
                f"Backup {backup_id}{pinned} has no manifest, so it was never committed (or has expired)."
            )
        body = response["Body"].read()
        manifest = Manifest.from_json(body, where=f"s3://{self.bucket}/{key}")
        self._check_bound(manifest, backup_id, key)
        return manifest, response.get("VersionId")

    def _check_bound(self, manifest: Manifest, backup_id: str, key: str) -> None:
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

    def manifest_exists(self, backup_id: str) -> bool:
        key = self.manifest_key(backup_id)
        head = _call(
            f"Looking for the manifest of {backup_id}",
            lambda: self.client.head_object(Bucket=self.bucket, Key=key),
            absent=_MISSING,
        )
        return head is not None

    def _version_args(self, key: str, version_id: str | None) -> dict[str, Any]:
        return {"Bucket": self.bucket, "Key": key, **({"VersionId": version_id} if version_id else {})}

    def read_object(self, key: str, version_id: str | None) -> Iterator[bytes]:
        """Chunks of exactly the object version a manifest names."""
        body = _call(
            f"Reading {key}",
            lambda: self.client.get_object(**self._version_args(key, version_id))["Body"],
            absent=_MISSING,
        )
        if body is None:
            raise ChecksumMismatchError(
                f"The object {key} (version {version_id}) named by the manifest is missing from the bucket."
            )
        return self._checked_chunks(key, body.iter_chunks(chunk_size=MIB))

    @staticmethod
    def _checked_chunks(key: str, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """botocore validates S3's own checksum of single-part objects while reading: say so in our terms."""
        try:
            with _listing(f"Reading {key}"):
                yield from chunks
        except FlexibleChecksumError:
            raise ChecksumMismatchError(
                f"The object {key} does not match the checksum S3 stored with it (the stored bytes were altered)."
            ) from None

    def object_size(self, key: str, version_id: str | None) -> int | None:
        """Size of the object version, or None if it is missing."""
        head = _call(
            f"Reading {key}",
            lambda: self.client.head_object(**self._version_args(key, version_id)),
            absent=_MISSING | {"400"},
        )
        return None if head is None else int(head["ContentLength"])

    def _keys(self, prefix: str, start_after: str | None = None) -> Iterator[str]:
        for key, _size in self._sized_keys(prefix, start_after):
            yield key

    def _sized_keys(self, prefix: str, start_after: str | None = None) -> Iterator[tuple[str, int]]:
        for item in self._listed(prefix, start_after):
            yield item["Key"], int(item["Size"])

    def _listed(self, prefix: str, start_after: str | None = None) -> Iterator[dict[str, Any]]:
        """Every object under ``prefix`` as ListObjectsV2 describes it (key, size, last modified), in key order."""
        args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix}
        if start_after:
            args["StartAfter"] = start_after
        with _listing(f"Listing {self.bucket}/{prefix}"):
            for page in self.client.get_paginator("list_objects_v2").paginate(**args):
                for item in page.get("Contents", []):
                    yield dict(item)

    def _subfolders(self, prefix: str) -> list[str]:
        with _listing(f"Listing {self.bucket}/{prefix}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            return [p["Prefix"] for page in pages for p in page.get("CommonPrefixes", [])]

    def inventory(self, database: str) -> dict[str, int]:
        """Stored size of every committed backup of ``database`` by id, from one listing (no GETs)."""
        sizes: dict[str, int] = {}
        committed: set[str] = set()
        for key, size in self._sized_keys(f"{self.prefix}/{check_database_name(database)}/"):
            name = key.rsplit("/", 1)[1]
            if name.endswith(MANIFEST_SUFFIX):
                committed.add(name.removesuffix(MANIFEST_SUFFIX))
            elif not name.endswith(tuple(f".{kind}.json" for kind in SIDECAR_KINDS)):
                sizes[name.split(".", 1)[0]] = size
        return {backup_id: sizes.get(backup_id, 0) for backup_id in sorted(committed)}

    def backup_ids(self, database: str) -> list[str]:
        """Ids of every committed backup of ``database``, oldest first (one listing, no GETs)."""
        prefix = f"{self.prefix}/{check_database_name(database)}/"
        return [
            k.rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX) for k in self._keys(prefix) if k.endswith(MANIFEST_SUFFIX)
        ]

    def manifests(self, database: str) -> list[Manifest]:
        """Every committed manifest of ``database``, oldest first (read in parallel)."""
        ids = self.backup_ids(database)
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(self.get_manifest, ids))

    def newest_backup_id(self, database: str) -> str | None:
        """Id of the newest committed backup, walking years/months/days newest first.

        A handful of requests per database whatever its number of backups (the freshness check
        runs this for every database).
        """
        root = f"{self.prefix}/{check_database_name(database)}/"
        for year in sorted(self._subfolders(root), reverse=True):
            for month in sorted(self._subfolders(year), reverse=True):
                for day in sorted(self._subfolders(month), reverse=True):
                    ids = [k for k in self._keys(day) if k.endswith(MANIFEST_SUFFIX)]
                    if ids:
                        return max(ids).rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX)
        return None

    def recent_backup_ids(self, database: str, before: str, limit: int) -> list[str]:
        """Ids of up to ``limit`` committed backups of ``database`` older than ``before``, newest first.

        Walks years, months and days newest first like ``newest_backup_id`` and lists at most
        ``limit + RECENT_SPARE_DAYS`` day folders, so the cost is bounded by ``limit`` whatever the
        number of backups (days holding only uncommitted artifacts use up the spare listings).
        """
        root = f"{self.prefix}/{check_database_name(database)}/"
        before_day = self._day_prefix(database, parse_backup_id(before, database)[1])
        found: list[str] = []
        day_budget = limit + RECENT_SPARE_DAYS
        for year in sorted(self._subfolders(root), reverse=True):
            if year > before_day:  # a later year: "2027/" sorts after "2026/11/21/"
                continue
            for month in sorted(self._subfolders(year), reverse=True):
                if month > before_day:
                    continue
                for day in sorted(self._subfolders(month), reverse=True):
                    if day > before_day:
                        continue
                    if len(found) >= limit or day_budget == 0:
                        return found[:limit]
                    day_budget -= 1
                    names = (k.rsplit("/", 1)[1] for k in self._keys(day) if k.endswith(MANIFEST_SUFFIX))
                    ids = (name.removesuffix(MANIFEST_SUFFIX) for name in names)
                    found.extend(sorted((i for i in ids if i < before), reverse=True))
        return found[:limit]

    def earliest_backup_since(self, database: str, since: datetime) -> datetime | None:
        """Time of the first committed backup at or after the day of ``since`` (usually one request)."""
        root = f"{self.prefix}/{check_database_name(database)}/"
        start = self._day_prefix(database, since - timedelta(days=1))
        start = start[:-1] + "~"  # sorts after every key of the day before ``since``
        for key in self._keys(root, start_after=start):
            if key.endswith(MANIFEST_SUFFIX):
                _, at = parse_backup_id(key.rsplit("/", 1)[1].removesuffix(MANIFEST_SUFFIX))
                return at
        return None

    # -- run lock -----------------------------------------------------------------------------

    def acquire_run_lock(self, database: str, owner: str, now: datetime, ttl: timedelta) -> RunLock:
        """Take the backup lock of ``database`` by conditional write; a lock past its expiry is taken over.

        BackupAlreadyRunningError when a live lock is held (or another run wins the takeover).
        """
        self._refuse_on_replica(f"taking the backup lock of {database}")
        key = self._lock_key(database)
        body = json.dumps(
            {"owner": owner, "acquired_at": now.isoformat(), "expires_at": (now + ttl).isoformat()}
        ).encode()
        for _attempt in range(3):
            etag = self._conditional_put(key, body, IfNoneMatch="*")
            if etag is not None:
                return RunLock(database, owner, etag)
            held = self._read_lock(key)
            if held is None:  # released between our write and our read: try again
                continue
            current, etag_held = held
            if datetime.fromisoformat(current["expires_at"]) > now:
                raise BackupAlreadyRunningError(
                    f"A backup of {database} is already running (started {current['acquired_at']} by "
                    f"{current['owner']}); this run is skipped."
                )
            etag = self._conditional_put(key, body, IfMatch=etag_held)
            if etag is None:
                raise BackupAlreadyRunningError(
                    f"Another run took over the expired backup lock of {database}; this run is skipped."
                )
            return RunLock(database, owner, etag)
        raise BackupAlreadyRunningError(f"The backup lock of {database} keeps changing hands; this run is skipped.")

    def _conditional_put(self, key: str, body: bytes, **condition: str) -> str | None:
        """PUT under a condition; the new ETag, or None when the condition did not hold."""
        response = _call(
            f"Writing the lock {key}",
            lambda: self.client.put_object(Bucket=self.bucket, Key=key, Body=body, **condition),  # type: ignore[arg-type]  # IfNoneMatch / IfMatch
            absent=_CONFLICT,
        )
        return None if response is None else str(response["ETag"])

    def _read_lock(self, key: str) -> tuple[dict[str, str], str] | None:
        def read() -> tuple[dict[str, str], str]:
            current = self.client.get_object(Bucket=self.bucket, Key=key)
            return json.loads(current["Body"].read()), str(current["ETag"])

        return _call(f"Reading the lock {key}", read, absent=_MISSING)

    def release_run_lock(self, lock: RunLock) -> None:
        """Release the lock only if it is still ours: a conditional delete on the ETag we wrote.

        Nothing happens if it is gone already, or was taken over by another run after it expired.
        """
        self._refuse_on_replica(f"releasing the backup lock of {lock.database}")
        key = self._lock_key(lock.database)
        _call(
            f"Releasing the lock {key}",
            lambda: self.client.delete_object(Bucket=self.bucket, Key=key, IfMatch=lock.etag),
            absent=_MISSING | _CONFLICT,
        )

    # -- failure records ----------------------------------------------------------------------

    def record_failure(self, database: str, backup_id: str, at: datetime, error: BaseException) -> int:
        """Keep a small record of a failed run (for `backstop stats`); expires with the daily tier.

        Returns the attempt: 1 for the first failure of ``backup_id``, more when the same scheduled
        run fails again (Lambda retries a failed invocation twice). A record that cannot be read
        counts as none, so a doubt always ends in an alert rather than in silence.
        """
        self._refuse_on_replica(f"recording the failed run {backup_id}")
        parse_backup_id(backup_id, database)
        key = f"{self._failure_prefix(database)}{backup_id}.json"
        previous = self._previous_failure(key)
        attempts = previous[0] + 1 if previous else 1
        body = json.dumps(
            {
                "backup_id": backup_id,
                "database": database,
                "at": at.isoformat(),
                "first_at": previous[1] if previous else at.isoformat(),
                "attempts": attempts,
                "error": type(error).__name__,
                "message": str(error),
            },
            indent=2,
        )
        _call(
            f"Recording the failed run {backup_id}",
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body.encode(),
                ContentType="application/json",
                Tagging=self.tagging({TIER_TAG: "daily", DATABASE_TAG: database}),
                **self.sse_args(),
            ),
        )
        return attempts

    def _previous_failure(self, key: str) -> tuple[int, str] | None:
        """Attempts and first time of the failure record at ``key``, or None if there is none (or it is unreadable)."""
        try:
            body = self._read(f"Reading the failure record {key}", key)
            if body is None:
                return None
            record = json.loads(body)
            return int(record.get("attempts", 1)), str(record["first_at"] if "first_at" in record else record["at"])
        except (StorageError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def failure_count(self, database: str) -> int:
        return sum(1 for _ in self._keys(self._failure_prefix(database)))

    # -- overwritten keys (services/repair.py) --------------------------------------------------

    def current_version(self, key: str) -> ObjectVersion | None:
        """The version anyone reading ``key`` without a version id gets (a delete marker included), or
        None if the key has no version at all.

        One HEAD, which needs only the s3:GetObject every reader holds: S3 answers a key whose
        current version is a delete marker with 404, ``x-amz-delete-marker`` and the marker's id.
        """
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) not in _MISSING:
                raise StorageError(f"Reading {key} failed: S3 answered {_code(exc) or 'an error'}.") from None
            headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
            if headers.get("x-amz-delete-marker") != "true":
                return None
            return ObjectVersion(key, headers.get("x-amz-version-id", "null"), is_latest=True, is_delete_marker=True)
        except BotoCoreError as exc:
            raise StorageError(f"Reading {key} failed: {exc}.") from None
        return ObjectVersion(key, head.get("VersionId", "null"), True, False, head.get("LastModified"))

    def versions(self, key: str) -> list[ObjectVersion]:
        """Every version and delete marker of exactly ``key``, the current one first, then newest first.

        ListObjectVersions with the key as prefix (other keys sharing it are left out), every page.
        """
        found: list[tuple[bool, datetime, ObjectVersion]] = []
        with _listing(f"Listing the versions of {key}"):
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=key)
            for page in pages:
                entries: list[tuple[Any, bool]] = [(item, False) for item in page.get("Versions", [])]
                entries += [(item, True) for item in page.get("DeleteMarkers", [])]
                for item, is_marker in entries:
                    if item["Key"] == key:
                        modified = item["LastModified"]
                        version = ObjectVersion(key, item["VersionId"], item["IsLatest"], is_marker, modified)
                        found.append((version.is_latest, modified, version))
        # A stable sort: entries of the same second keep the order S3 listed them in.
        return [version for *_, version in sorted(found, key=lambda entry: entry[:2], reverse=True)]

    def object_tags(self, key: str, version_id: str) -> dict[str, str]:
        """The tags of exactly ``version_id`` of ``key``."""
        response = _call(
            f"Reading the tags of {key} (version {version_id})",
            lambda: self.client.get_object_tagging(Bucket=self.bucket, Key=key, VersionId=version_id),
        )
        assert response is not None  # no ``absent`` codes: every failure raised
        return {tag["Key"]: tag["Value"] for tag in response["TagSet"]}

    def put_object_tags(self, key: str, version_id: str, tags: dict[str, str]) -> None:
        """Replace the tags of exactly ``version_id`` of ``key`` with ``tags``."""
        self._refuse_on_replica(f"tagging {key}")
        tag_set = [{"Key": name, "Value": value} for name, value in sorted(tags.items())]
        _call(
            f"Tagging {key} (version {version_id})",
            lambda: self.client.put_object_tagging(
                Bucket=self.bucket,
                Key=key,
                VersionId=version_id,
                Tagging={"TagSet": tag_set},  # type: ignore[typeddict-item]  # built above with the right keys
            ),
        )

    def quarantine_key(self, key: str, version_id: str) -> str:
        """Where repair keeps ``version_id`` of ``key`` once it has taken it off the key (docs/storage.md)."""
        return f"{self.prefix}/_quarantine/{key.removeprefix(self.prefix + '/')}/{version_id}"

    def copy_version(self, key: str, version_id: str, dest_key: str) -> None:
        """Copy exactly ``version_id`` of ``key`` to ``dest_key`` (a managed copy, any size), encrypted like backups."""
        self._refuse_on_replica(f"copying {key} to {dest_key}")
        # The managed copy takes no BucketKeyEnabled; the bucket's own Bucket Key setting applies.
        extra = {name: value for name, value in self.sse_args().items() if name != "BucketKeyEnabled"}
        _call(
            f"Copying {key} (version {version_id}) to {dest_key}",
            lambda: self.client.copy(
                {"Bucket": self.bucket, "Key": key, "VersionId": version_id}, self.bucket, dest_key, ExtraArgs=extra
            ),
        )

    def remove_version(self, version: ObjectVersion) -> None:
        """Delete exactly ``version`` (DeleteObjectVersion): how repair takes an intruder off a backup's key.

        A version under a governance-mode Object Lock is deleted with the governance bypass (the
        right of ``storage.administrators``); one under a compliance-mode lock cannot be deleted by
        anyone before its retention ends, which is said rather than tried. A version already gone is
        not an error.
        """
        self._refuse_on_replica(f"removing version {version.version_id} of {version.key}")
        key, version_id = version.key, version.version_id
        args = self._version_args(key, version_id)
        if not version.is_delete_marker:  # a delete marker carries no lock (and cannot be HEAD-ed by version)
            head = _call(
                f"Reading {key} (version {version_id})", lambda: self.client.head_object(**args), absent=_MISSING
            )
            if head is None:
                return
            until = head.get("ObjectLockRetainUntilDate")
            if until is not None and until > datetime.now(until.tzinfo):
                if head.get("ObjectLockMode") == "COMPLIANCE":
                    raise StorageError(
                        f"Version {version_id} of {key} is under a compliance-mode Object Lock until "
                        f"{until.isoformat()}: nobody can remove it before then."
                    )
                args["BypassGovernanceRetention"] = True
        try:
            self.client.delete_object(**args)
        except ClientError as exc:
            raise StorageError(
                f"Removing version {version_id} of {key} failed: S3 answered {_code(exc) or 'an error'}; it takes "
                "s3:DeleteObjectVersion (and s3:BypassGovernanceRetention for a governance-locked version), "
                "which only storage.administrators roles hold."
            ) from None
        except BotoCoreError as exc:
            raise StorageError(f"Removing version {version_id} of {key} failed: {exc}.") from None


class _UploadContext:
    def __init__(self, store: S3Store, key: str, tags: dict[str, str], lock: LockUntil | None = None) -> None:
        self._store = store
        self._key = key
        self._tags = tags
        self._lock = lock
        self._upload: MultipartUpload | None = None

    def __enter__(self) -> MultipartUpload:
        try:
            response = self._store.client.create_multipart_upload(
                Bucket=self._store.bucket,
                Key=self._key,
                ChecksumAlgorithm="SHA256",
                Tagging=S3Store.tagging(self._tags),
                **self._store.sse_args(),
                **S3Store.lock_args(self._lock),
            )
        except (ClientError, BotoCoreError) as exc:
            raise UploadError(f"S3 refused to start the upload of {self._key}: {exc}.") from None
        self._upload = MultipartUpload(self._store, self._key, response["UploadId"], self._lock)
        return self._upload

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or self._upload is None:
            return
        # If even the abort fails, the bucket's lifecycle rule aborts the upload after one day.
        with contextlib.suppress(ClientError, BotoCoreError):
            self._upload.abort()
