"""The manifest: the commit marker of a backup and everything needed to trust and restore it.

A backup exists only if its manifest exists. The manifest carries a SHA-256 of itself
(``manifest_sha256``, over the canonical JSON of every other field), so a manifest edited or
truncated in the bucket is caught before anything relies on it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backstop.errors import ManifestError

FORMAT_VERSION = 1

BackupType = Literal["scheduled", "manual", "pre-restore", "drill"]
Tier = Literal["daily", "weekly", "monthly", "yearly"]


class _Part(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Trigger(_Part):
    """What started the run: a schedule, a user at the command line, or a workflow execution."""

    kind: Literal["schedule", "user", "execution"]
    by: str


class StoredObject(_Part):
    """The artifact as S3 holds it."""

    bucket: str
    key: str
    version_id: str | None
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    s3_checksum_sha256: str
    parts: int = Field(ge=1)
    encryption: str | None = None
    kms_key_id: str | None = None


class RawStream(_Part):
    """The engine's output before compression (what ``zstd -d`` gives back)."""

    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Compression(_Part):
    algorithm: Literal["zstd", "gzip"]
    level: int


class IntegrityCheck(_Part):
    """The engine check run on the snapshot before upload."""

    check: str
    passed: bool
    detail: str


class TableStat(_Part):
    rows: int = Field(ge=0)
    exact: bool = True


class Manifest(_Part):
    """Format version 1 of the manifest (see docs/storage.md)."""

    format_version: Literal[1] = 1
    backup_id: str
    database: str
    engine: str
    type: BackupType
    trigger: Trigger
    scheduled_for: datetime
    started_at: datetime
    finished_at: datetime
    source: dict[str, str | int | None]
    tools: dict[str, str]
    object: StoredObject
    raw: RawStream
    compression: Compression
    integrity: IntegrityCheck
    tables: dict[str, TableStat]
    schema_version: str | None = None
    retention_tier: Tier
    warnings: tuple[str, ...] = ()
    manifest_sha256: str = ""

    def sealed(self) -> Manifest:
        """This manifest with ``manifest_sha256`` set to the checksum of its other fields."""
        return self.model_copy(update={"manifest_sha256": _checksum(self._body())})

    def to_json(self) -> bytes:
        """Pretty JSON (one field per line, so `grep` works in the runbook), sealed."""
        sealed = self.sealed()
        return (json.dumps(sealed.model_dump(mode="json"), indent=2, sort_keys=True) + "\n").encode()

    def _body(self) -> dict[str, Any]:
        body = self.model_dump(mode="json")
        body.pop("manifest_sha256")
        return body

    @classmethod
    def from_json(cls, data: bytes, *, where: str) -> Manifest:
        """Parse and check a stored manifest; ManifestError says what is wrong with it."""
        try:
            raw = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ManifestError(f"Manifest {where} is not valid JSON (truncated or overwritten?).") from None
        if not isinstance(raw, dict):
            raise ManifestError(f"Manifest {where} is not a JSON object.")
        if raw.get("format_version") != FORMAT_VERSION:
            raise ManifestError(
                f"Manifest {where} has format version {raw.get('format_version')!r}; "
                f"this Backstop reads version {FORMAT_VERSION}."
            )
        recorded = raw.get("manifest_sha256")
        body = {k: v for k, v in raw.items() if k != "manifest_sha256"}
        if recorded != _checksum(body):
            raise ManifestError(f"Manifest {where} fails its own checksum: it was modified after it was written.")
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"])
            raise ManifestError(f"Manifest {where} is malformed at {field}: {first['msg']}.") from None


def _checksum(body: dict[str, Any]) -> str:
    # ASCII-escaped like the stored file, so the compact form can be rebuilt from the file's own text
    # with sed and checked with sha256sum (docs/runbooks/manual-recovery.md does exactly that).
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()
