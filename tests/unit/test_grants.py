"""Approval grants: sealed by KMS, refused for anything but exactly what was approved."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backstop.errors import ApprovalInvalidError
from backstop.grants import GrantClaims, KmsGrantSigner, LocalGrantSigner, check_grant, seal
from tests.conftest import REGION

NOW = datetime(2026, 12, 5, 10, tzinfo=UTC)
EXPECTED = {
    "execution": "arn:aws:states:us-east-1:123456789012:execution:Backstop-restore:run-1",
    "database": "orders",
    "target": "staging",
    "backup_id": "orders-20261205T020000Z",
    "sha256": "a" * 64,
    "object_version": "v-object",
    "manifest_version": "v-manifest",
}


def claims(**changes: Any) -> GrantClaims:
    return GrantClaims(
        **{
            **EXPECTED,
            "approver": "user:AIDABOB",
            "approver_arn": "arn:aws:iam::123456789012:user/bob",
            "requester": "user:AIDAALICE",
            "approved_at": NOW,
            "expires_at": NOW + timedelta(hours=6),
            **changes,
        }
    )


@pytest.fixture
def kms() -> Iterator[tuple[KmsGrantSigner, KmsGrantSigner]]:
    """The approval key, and another HMAC key of the same account."""
    with mock_aws():
        client = boto3.client("kms", region_name=REGION)
        keys = [
            client.create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")["KeyMetadata"]["Arn"]
            for _ in range(2)
        ]
        yield KmsGrantSigner(client, keys[0]), KmsGrantSigner(client, keys[1])


def test_a_grant_sealed_with_the_approval_key_verifies_for_exactly_what_it_names(kms: Any) -> None:
    signer, _ = kms
    grant = seal(claims(), signer).model_dump(mode="json")
    assert check_grant(grant, EXPECTED, signer, NOW).approver_arn.endswith(":user/bob")


def test_a_grant_sealed_with_another_key_does_not_verify(kms: Any) -> None:
    signer, other = kms
    for forger in (other, LocalGrantSigner()):
        with pytest.raises(ApprovalInvalidError, match="seal does not verify"):
            check_grant(seal(claims(), forger).model_dump(mode="json"), EXPECTED, signer, NOW)


@pytest.mark.parametrize("field", sorted(EXPECTED))
def test_a_grant_for_anything_else_is_refused_by_name(kms: Any, field: str) -> None:
    signer, _ = kms
    grant = seal(claims(**{field: "something-else"}), signer).model_dump(mode="json")
    with pytest.raises(ApprovalInvalidError, match=f"the grant is for {field}"):
        check_grant(grant, EXPECTED, signer, NOW)


def test_claims_edited_after_sealing_do_not_verify(kms: Any) -> None:
    signer, _ = kms
    grant = seal(claims(target="in-place"), signer).model_dump(mode="json")
    grant["claims"]["target"] = "staging"
    with pytest.raises(ApprovalInvalidError, match="seal does not verify"):
        check_grant(grant, EXPECTED, signer, NOW)


def test_an_expired_grant_is_refused(kms: Any) -> None:
    signer, _ = kms
    grant = seal(claims(), signer).model_dump(mode="json")
    with pytest.raises(ApprovalInvalidError, match="expired"):
        check_grant(grant, EXPECTED, signer, NOW + timedelta(hours=6))


@pytest.mark.parametrize("raw", [None, {}, {"approved_by": "bob"}, {"claims": {}, "mac": "x"}, "grant"])
def test_no_grant_or_a_malformed_one_is_refused(raw: Any) -> None:
    with pytest.raises(ApprovalInvalidError, match="refused: no valid approval"):
        check_grant(raw, EXPECTED, LocalGrantSigner(), NOW)
