"""Identity proofs: who a principal is, and every way a proof is refused before or after STS answers."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from backstop.adapters.sts import StsIdentityVerifier, sign_proof
from backstop.config import RestoreSettings
from backstop.errors import IdentityProofError
from backstop.identity import IdentityProof, Principal, intent
from local.emulator import ACCOUNT, Emulator, running
from local.principals import role_sessions, user_session

pytestmark = pytest.mark.xdist_group("emulator")

EXECUTION = f"arn:aws:states:us-east-1:{ACCOUNT}:execution:Backstop-restore:run-1"


@pytest.mark.parametrize(
    ("user_id", "arn", "key"),
    [
        ("AIDAALICE", "arn:aws:iam::111122223333:user/alice", "user:AIDAALICE"),
        ("AIDAALICE", "arn:aws:iam::111122223333:user/team/alice", "user:AIDAALICE"),
        ("AROADBA:carol", "arn:aws:sts::111122223333:assumed-role/DBA/carol", "role:AROADBA"),
        ("AROADBA:anything-else", "arn:aws:sts::111122223333:assumed-role/DBA/anything-else", "role:AROADBA"),
        (
            "AROASSO:alice@example.com",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_DBA_0123/alice@example.com",
            "sso:AROASSO:alice@example.com",
        ),
        ("111122223333", "arn:aws:iam::111122223333:root", "root:111122223333"),
        ("111122223333:bob", "arn:aws:sts::111122223333:federated-user/bob", "federated:111122223333"),
    ],
)
def test_principals_are_compared_by_what_the_caller_cannot_choose(user_id: str, arn: str, key: str) -> None:
    assert Principal.of(user_id, arn, "111122223333").key == key


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with running() as emulator:
        yield emulator


def proof_of(session: boto3.Session, emulator: Emulator, action: str = "approve") -> IdentityProof:
    return sign_proof(action, EXECUTION, session=session, endpoint_url=emulator.endpoint)  # type: ignore[arg-type]


def verifier(emulator: Emulator, account: str = ACCOUNT) -> StsIdentityVerifier:
    return StsIdentityVerifier(emulator.endpoint + "/", account)


def check(emulator: Emulator, proof: IdentityProof, *, at: datetime | None = None, account: str = ACCOUNT) -> Principal:
    now = at or datetime.now(UTC)
    return verifier(emulator, account).verify(
        proof, intent("approve", EXECUTION), now, not_before=now - timedelta(hours=1)
    )


def test_a_proof_names_the_user_who_signed_it(emulator: Emulator) -> None:
    alice, bob = user_session(emulator, "alice"), user_session(emulator, "bob")
    assert check(emulator, proof_of(alice, emulator)).arn.endswith(":user/alice")
    assert check(emulator, proof_of(bob, emulator)).arn.endswith(":user/bob")


def test_two_sessions_of_one_role_are_one_principal(emulator: Emulator) -> None:
    carol, dave = role_sessions(emulator, "oncall", "carol", "dave")
    first, second = check(emulator, proof_of(carol, emulator)), check(emulator, proof_of(dave, emulator))
    assert first.arn != second.arn and first.key == second.key


def test_a_proof_signed_for_another_host_is_never_sent(emulator: Emulator) -> None:
    proof = proof_of(user_session(emulator, "alice"), emulator)
    elsewhere = proof.model_copy(update={"url": "https://attacker.example/"})
    with pytest.raises(IdentityProofError, match=r"signed for attacker\.example"):
        check(emulator, elsewhere)


def test_a_proof_for_another_action_or_execution_is_refused(emulator: Emulator) -> None:
    alice = user_session(emulator, "alice")
    with pytest.raises(IdentityProofError, match="one action only"):
        check(emulator, proof_of(alice, emulator, action="reject"))
    other = sign_proof("approve", EXECUTION + "x", session=alice, endpoint_url=emulator.endpoint)
    with pytest.raises(IdentityProofError, match="one action only"):
        check(emulator, other)


def test_an_intent_header_added_after_signing_is_refused(emulator: Emulator) -> None:
    # given a proof signed without the intent header, the header added afterwards (not covered by the signature)
    proof = proof_of(user_session(emulator, "alice"), emulator)
    headers = {k: v for k, v in proof.headers.items() if k != "Authorization"}
    authorization = proof.headers["Authorization"].replace(";x-backstop-intent", "")
    forged = proof.model_copy(update={"headers": {**headers, "Authorization": authorization}})
    with pytest.raises(IdentityProofError, match="one action only"):
        check(emulator, forged)


def test_a_stale_proof_is_refused(emulator: Emulator) -> None:
    proof = proof_of(user_session(emulator, "alice"), emulator)
    with pytest.raises(IdentityProofError, match="stale"):
        check(emulator, proof, at=datetime.now(UTC) + timedelta(minutes=16))


def test_a_proof_that_is_not_get_caller_identity_is_refused(emulator: Emulator) -> None:
    proof = proof_of(user_session(emulator, "alice"), emulator)
    with pytest.raises(IdentityProofError, match="not a GetCallerIdentity"):
        check(emulator, proof.model_copy(update={"body": "Action=AssumeRole&Version=2011-06-15"}))


def test_a_principal_of_another_account_is_refused(emulator: Emulator) -> None:
    proof = proof_of(user_session(emulator, "alice"), emulator)
    with pytest.raises(IdentityProofError, match="not this stack's 999999999999"):
        check(emulator, proof, account="999999999999")


def test_sts_unreachable_is_one_sentence() -> None:
    proof = IdentityProof(
        url="http://127.0.0.1:9/",
        headers={
            "X-Backstop-Intent": intent("approve", EXECUTION),
            "X-Amz-Date": datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ"),
            "Authorization": "AWS4-HMAC-SHA256 Credential=x, "
            "SignedHeaders=host;x-amz-date;x-backstop-intent, Signature=0",
        },
        body="Action=GetCallerIdentity&Version=2011-06-15",
    )
    now = datetime.now(UTC)
    with pytest.raises(IdentityProofError, match="could not be reached"):
        StsIdentityVerifier("http://127.0.0.1:9/", ACCOUNT, timeout=2).verify(
            proof, intent("approve", EXECUTION), now, not_before=now
        )


@pytest.mark.parametrize(
    "pattern", ["alice", "arn:aws:iam::12345:user/alice", "arn:aws:s3:::bucket", "arn:aws:iam::123456789012:role/DBA"]
)
def test_an_approver_that_is_not_a_principal_arn_is_refused_by_name(pattern: str) -> None:
    with pytest.raises(ValueError, match="is not a principal ARN"):
        RestoreSettings(approvers=(pattern,))


def test_approver_patterns_for_users_and_role_sessions_are_accepted() -> None:
    settings = RestoreSettings(
        approvers=("arn:aws:iam::123456789012:user/alice", "arn:aws:sts::123456789012:assumed-role/DBA/*")
    )
    assert len(settings.approvers) == 2
