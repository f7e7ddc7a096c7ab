"""What the services need from the outside world; the adapters (``backstop.adapters``) provide it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

from backstop.identity import IdentityProof, Principal
from backstop.manifest import Manifest, Tier

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class UploadResult:
    """What S3 holds after a completed upload whose size and checksum were compared with the stream."""

    key: str
    version_id: str | None
    size: int
    s3_checksum_sha256: str
    parts: int
    encryption: str | None
    kms_key_id: str | None


@dataclass(frozen=True)
class RunLock:
    """A held backup lock; ``etag`` identifies our write of it."""

    database: str
    owner: str
    etag: str


@dataclass(frozen=True)
class LockUntil:
    """The S3 Object Lock retention an object is written with: nobody deletes or overwrites that
    version before ``until`` (in GOVERNANCE mode, except a principal allowed to bypass it)."""

    mode: Literal["GOVERNANCE", "COMPLIANCE"]
    until: datetime


class Upload(Protocol):
    size: int

    def write(self, data: bytes) -> None: ...
    def submit_tail(self) -> None: ...
    def complete(self) -> UploadResult: ...


@dataclass(frozen=True)
class ObjectVersion:
    """One entry of a key's history: an object version or a delete marker (``is_delete_marker``).

    ``is_latest`` marks the key's current version, what anyone reading the key without a version
    gets; ``last_modified`` is None where S3 does not say (the delete marker a HEAD reports).
    """

    key: str
    version_id: str
    is_latest: bool
    is_delete_marker: bool
    last_modified: datetime | None = None


class Backups(Protocol):
    """Stored backups: artifacts written once and read back, manifests written last (``S3Store``)."""

    bucket: str

    def object_key(self, backup_id: str, ext: str, attempt: str | None = None) -> str: ...
    def manifest_key(self, backup_id: str) -> str: ...
    def tags_for(self, database: str, engine: str, tier: Tier) -> dict[str, str]: ...
    def upload(
        self, key: str, tags: dict[str, str], lock: LockUntil | None = None
    ) -> AbstractContextManager[Upload]: ...
    def delete_version(self, key: str, version_id: str | None) -> None: ...
    def put_manifest(self, manifest: Manifest, tags: dict[str, str], lock: LockUntil | None = None) -> bool: ...
    def get_manifest(self, backup_id: str) -> Manifest: ...
    def pinned_manifest(self, backup_id: str, version_id: str | None = None) -> tuple[Manifest, str | None]: ...
    def manifest_exists(self, backup_id: str) -> bool: ...
    def manifests(self, database: str) -> list[Manifest]: ...
    def read_object(self, key: str, version_id: str | None) -> Iterator[bytes]: ...
    def object_size(self, key: str, version_id: str | None) -> int | None: ...
    def newest_backup_id(self, database: str) -> str | None: ...
    def recent_backup_ids(self, database: str, before: str, limit: int) -> list[str]: ...
    def earliest_backup_since(self, database: str, since: datetime) -> datetime | None: ...
    def inventory(self, database: str) -> dict[str, int]: ...


class RunLocks(Protocol):
    """One backup run of a database at a time: a lock that expires with the run's time limit."""

    def acquire_run_lock(self, database: str, owner: str, now: datetime, ttl: timedelta) -> RunLock: ...
    def release_run_lock(self, lock: RunLock) -> None: ...


class FailureLog(Protocol):
    """The failed attempts of a backup run, so a retry's failure is counted, not alerted again."""

    def record_failure(self, database: str, backup_id: str, at: datetime, error: BaseException) -> int: ...
    def failure_count(self, database: str) -> int: ...


class VerificationRecords(Protocol):
    """What drills and the sweep found about a backup, kept beside it, and each database's last good drill."""

    def put_sidecar(self, manifest: Manifest, kind: Literal["drill", "sweep"], document: dict[str, Any]) -> None: ...
    def get_sidecar(self, backup_id: str, kind: Literal["drill", "sweep"]) -> dict[str, Any] | None: ...
    def sidecar_times(self, database: str, kind: Literal["drill", "sweep"]) -> dict[str, datetime]: ...
    def put_last_drill_success(self, database: str, record: dict[str, Any]) -> None: ...
    def last_drill_success(self, database: str) -> dict[str, Any] | None: ...


class VersionHistory(Protocol):
    """A key's versions and tags: what the sweep compares, the guard re-tags and repair restores."""

    def current_version(self, key: str) -> ObjectVersion | None: ...
    def versions(self, key: str) -> list[ObjectVersion]: ...
    def object_tags(self, key: str, version_id: str) -> dict[str, str]: ...
    def put_object_tags(self, key: str, version_id: str, tags: dict[str, str]) -> None: ...
    def quarantine_key(self, key: str, version_id: str) -> str: ...
    def copy_version(self, key: str, version_id: str, dest_key: str) -> None: ...
    def remove_version(self, version: ObjectVersion) -> None: ...


class BackupStore(Backups, RunLocks, FailureLog, VerificationRecords, VersionHistory, Protocol):
    """The whole vault, for the services that need several of its parts (``S3Store`` implements it)."""


class Notifier(Protocol):
    """Where failure and staleness alerts go (SNS in AWS)."""

    def publish(self, subject: str, message: dict[str, object]) -> None: ...


class Progress(Protocol):
    """A progress display for work that takes more than a moment (a rich bar at the terminal)."""

    def start(self, description: str, total: int | None) -> None: ...
    def advance(self, amount: int) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    """Progress that shows nothing (handlers, --json)."""

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        pass

    def finish(self) -> None:
        pass


class NoNotifier:
    """Alerts that go nowhere: the command line reports failures itself when no topic is configured."""

    def publish(self, subject: str, message: dict[str, object]) -> None:
        pass


class Executions(Protocol):
    """The restore state machine's executions (Step Functions)."""

    def describe(self, execution_arn: str) -> dict[str, Any]: ...
    def history(self, execution_arn: str) -> list[dict[str, Any]]: ...
    def send_success(self, token: str, output: dict[str, Any]) -> None: ...
    def send_failure(self, token: str, error: str, cause: str) -> None: ...


class IdentityVerifier(Protocol):
    """Who signed an identity proof (STS ``GetCallerIdentity``, sent to this region's endpoint)."""

    def verify(
        self, proof: IdentityProof, expected_intent: str, now: datetime, *, not_before: datetime
    ) -> Principal: ...


@dataclass(frozen=True)
class TargetLock:
    database: str
    target: str
    owner: str
    expires_at: datetime | None


@dataclass(frozen=True)
class PendingApproval:
    execution: str
    database: str
    target: str
    backup_id: str
    requested_by: str


class RestoreLedger(Protocol):
    """Target locks, pending approvals and the audit trail of restores (``backstop.adapters.restore_table``)."""

    def acquire(self, database: str, target: str, owner: str, now: datetime, ttl: timedelta) -> TargetLock: ...
    def holder(self, database: str, target: str) -> dict[str, Any] | None: ...
    def release(self, database: str, target: str, owner: str) -> bool: ...
    def keep(self, database: str, target: str, owner: str, reason: str) -> None: ...
    def put_approval(self, approval: PendingApproval, expires: datetime) -> None: ...
    def pending(self, execution: str) -> PendingApproval: ...
    def take_approval(self, execution: str) -> None: ...
    def put_audit(self, execution: str, record: dict[str, Any]) -> None: ...
    def record_refusal(self, record: dict[str, Any], now: datetime) -> str: ...
    def update_audit(self, execution: str, fields: dict[str, Any]) -> None: ...
    def audit(self, execution: str) -> dict[str, Any] | None: ...
    def audits(self, limit: int = 50) -> list[dict[str, Any]]: ...
