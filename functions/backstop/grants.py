"""Approval grants: what a person approved, sealed with a MAC that only the approval component can make.

A grant names exactly one execution, database, target and backup (its id, the artifact's SHA-256 and
S3 version, the manifest's S3 version), who approved it (a verified principal), who requested it,
and when it expires. The seal is an HMAC made by AWS KMS with a key whose key policy lets the
approval role alone ``GenerateMac`` and the restore role alone ``VerifyMac``: no other principal,
the task token's holder included, can produce a grant that verifies.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import secrets
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from backstop.errors import ApprovalInvalidError

MAC_ALGORITHM = "HMAC_SHA_256"


class GrantClaims(BaseModel):
    """What the approver approved; the MAC covers exactly these fields, serialised canonically."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = 1
    execution: str
    database: str
    target: str
    backup_id: str
    sha256: str
    object_version: str | None
    manifest_version: str | None
    approver: str
    """The approver's principal key (``Principal.key``); ``approver_arn`` is how AWS named them."""
    approver_arn: str
    requester: str | None
    """The requester's principal key, or None when the request was not verified (a console start)."""
    approved_at: AwareDatetime
    expires_at: AwareDatetime

    def message(self) -> bytes:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":")).encode()


class Grant(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    claims: GrantClaims
    mac: str

    def essentials(self) -> dict[str, Any]:
        """What `backstop approve` prints and the audit record keeps (never the MAC)."""
        c = self.claims
        return {
            "execution": c.execution,
            "database": c.database,
            "target": c.target,
            "backup_id": c.backup_id,
            "sha256": c.sha256,
            "object_version": c.object_version,
            "approver": c.approver_arn,
            "approved_at": c.approved_at.isoformat(),
            "expires_at": c.expires_at.isoformat(),
        }


class GrantSigner(Protocol):
    """Makes and checks MACs (KMS in AWS; a local key in tests)."""

    def mac(self, message: bytes) -> bytes: ...
    def verify(self, message: bytes, mac: bytes) -> bool: ...


class KmsGrantSigner:
    """``kms:GenerateMac`` / ``kms:VerifyMac`` with the approval key (an HMAC_256 key)."""

    def __init__(self, client: Any, key_id: str) -> None:
        self._client = client
        self._key_id = key_id

    def mac(self, message: bytes) -> bytes:
        response = self._client.generate_mac(Message=message, KeyId=self._key_id, MacAlgorithm=MAC_ALGORITHM)
        return bytes(response["Mac"])

    def verify(self, message: bytes, mac: bytes) -> bool:
        try:
            response = self._client.verify_mac(Message=message, KeyId=self._key_id, MacAlgorithm=MAC_ALGORITHM, Mac=mac)
        except self._client.exceptions.KMSInvalidMacException:
            return False
        return bool(response.get("MacValid"))


class LocalGrantSigner:
    """An HMAC key held in memory: for tests of the services, and as a forger's best effort in attack tests."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def mac(self, message: bytes) -> bytes:
        return hmac.digest(self._key, message, "sha256")

    def verify(self, message: bytes, mac: bytes) -> bool:
        return hmac.compare_digest(self.mac(message), mac)


def seal(claims: GrantClaims, signer: GrantSigner) -> Grant:
    return Grant(claims=claims, mac=base64.b64encode(signer.mac(claims.message())).decode())


def check_grant(raw: Any, expected: dict[str, Any], signer: GrantSigner, now: datetime) -> GrantClaims:
    """The claims of ``raw`` if it is a sealed grant for exactly ``expected`` and still valid.

    ``expected`` holds the claims the step is about to act on (execution, database, target, backup
    id, checksum and versions); ApprovalInvalidError names the first thing that does not hold.
    """
    if not isinstance(raw, dict) or "claims" not in raw:
        raise ApprovalInvalidError("refused: no valid approval (no approval grant was presented)")
    try:
        grant = Grant.model_validate(raw)
        mac = base64.b64decode(grant.mac, validate=True)
    except (ValidationError, ValueError, binascii.Error):
        raise ApprovalInvalidError("refused: no valid approval (the approval grant is malformed)") from None
    if not signer.verify(grant.claims.message(), mac):
        raise ApprovalInvalidError("refused: no valid approval (the grant's seal does not verify)")
    claims = grant.claims.model_dump(mode="json")
    for name, value in expected.items():
        if claims.get(name) != value:
            raise ApprovalInvalidError(
                f"refused: no valid approval (the grant is for {name} {claims.get(name)!r}, not {value!r})"
            )
    if now >= grant.claims.expires_at:
        raise ApprovalInvalidError(f"refused: no valid approval (the grant expired at {grant.claims.expires_at})")
    return grant.claims
