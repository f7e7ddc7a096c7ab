"""History protection in the bucket policy, not only in code: the synthesized policy played against requests.

moto does not evaluate bucket policies, so each request below (who, what action, which key, which
headers) is evaluated against the vault's synthesized bucket policy by a small evaluator of its
Deny statements: IAM's wildcard matching on actions, resources and ``aws:PrincipalArn``, and the
``Null``, ``Bool``, ``ArnLike``, ``ArnNotLike``, ``StringEquals``, ``StringNotEquals`` and
``StringLikeIfExists`` condition operators the policies use (an operator it does not know
fails the test rather than being ignored). The roles' identity policies, which only narrow further,
are checked in test_scheduled_backups and test_restore_access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from backstop.config import parse_config
from infra.backup_vault import BUCKET_CONFIGURATION, HISTORY_SUFFIXES
from tests.infra import Synthesized, flatten, synthesized_example, synthesized_servers

pytestmark = pytest.mark.xdist_group("infra")

VAULT_BUCKET = "VaultBucket0925C477"
ACCOUNT = "arn:<AWS::Partition>:iam::<AWS::AccountId>"
BACKUP_ROLE = f"{ACCOUNT}:role/backstop/Backstop/BackupOrdersRole"
RESTORE_ROLE = f"{ACCOUNT}:role/backstop/Backstop/RestoreRole"
GUARD_ROLE = f"{ACCOUNT}:role/backstop/Backstop/guard/VerificationGuardRole"
DEPLOY_ROLE = f"{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-123456789012-us-east-1"
OPERATOR = "arn:aws:iam::123456789012:role/backstop-operator"
ADMIN = "arn:aws:iam::123456789012:role/vault-admin"
ARTIFACT = "backups/orders/2026/11/21/orders-20261121T020000Z.0a1b2c3d.sqlite.zst"
MANIFEST = "backups/orders/2026/11/21/orders-20261121T020000Z.manifest.json"
SIDECAR = "backups/orders/2026/11/21/orders-20261121T020000Z.sweep.json"
RUN_LOCK = "backups/_locks/orders.backup.json"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesized_example(tmp_path_factory.getbasetemp() / "cdk.out")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesized_servers(tmp_path_factory.getbasetemp() / "servers")


@dataclass(frozen=True)
class Request:
    principal: str
    action: str
    key: str | None = None
    """The object key; None for a bucket-level action."""
    context: dict[str, Any] = field(default_factory=dict)
    """Condition keys the request carries (absent keys are absent: ``Null`` sees them as null)."""


def like(pattern: str, value: str) -> bool:
    return (
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), value)
        is not None
    )


def _values(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _condition_holds(condition: dict[str, Any], request: Request) -> bool:
    context = {"aws:PrincipalArn": request.principal, **request.context}
    for operator, entries in condition.items():
        for name, expected in entries.items():
            present = name in context
            if operator == "Null":
                if any(str(e).lower() == "true" for e in _values(expected)) == present:
                    return False
            elif operator == "Bool":
                if not present or str(context[name]).lower() not in [str(e).lower() for e in _values(expected)]:
                    return False
            elif operator == "ArnNotLike":
                if present and any(like(e, str(context[name])) for e in _values(expected)):
                    return False
            elif operator == "ArnLike":
                if not present or not any(like(e, str(context[name])) for e in _values(expected)):
                    return False
            elif operator == "StringLikeIfExists":
                if present and not any(like(e, str(context[name])) for e in _values(expected)):
                    return False
            elif operator == "StringEquals":
                if not present or str(context[name]) not in _values(expected):
                    return False
            elif operator == "StringNotEquals":
                # a key the request does not carry equals nothing: a negated operator then holds
                if present and str(context[name]) in _values(expected):
                    return False
            else:
                raise AssertionError(f"the evaluator does not know the condition operator {operator}")
    return True


def _transport(statement: dict[str, Any]) -> bool:
    """The TLS statements CDK adds (enforce_ssl, minimum_tls_version): every request here uses TLS 1.2+."""
    condition = str(statement.get("Condition"))
    return "aws:SecureTransport" in condition or "s3:TlsVersion" in condition


def vault_policy(synthesized: Synthesized) -> list[dict[str, Any]]:
    for policy in synthesized.of_type("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": VAULT_BUCKET}:
            return [flatten(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]
    raise AssertionError("the vault has no bucket policy")


def denied_by(synthesized: Synthesized, request: Request) -> list[str]:
    """The Sids of the vault policy's Deny statements that refuse ``request`` (TLS assumed: it is enforced)."""
    resource = f"<{VAULT_BUCKET}.Arn>" + (f"/{request.key}" if request.key is not None else "")
    found = []
    for statement in vault_policy(synthesized):
        if statement["Effect"] != "Deny" or _transport(statement):
            continue
        if not any(like(a.lower(), request.action.lower()) for a in _values(statement["Action"])):
            continue
        if not any(like(r, resource) for r in _values(statement["Resource"])):
            continue
        if _condition_holds(statement.get("Condition", {}), request):
            found.append(statement.get("Sid", "?"))
    return found


KNOWN_OPERATORS = {"Null", "Bool", "ArnLike", "ArnNotLike", "StringEquals", "StringNotEquals", "StringLikeIfExists"}

CREATE = {"s3:ObjectCreationOperation": "true"}
WRITE_ONCE = {**CREATE, "s3:if-none-match": "*"}
TAGGED = {"s3:ExistingObjectTag/backstop:tier": "yearly"}


# -- write once -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", [ARTIFACT, MANIFEST])
def test_a_backup_role_writes_a_backup_only_where_nothing_is(example: Synthesized, key: str) -> None:
    # a PutObject or CompleteMultipartUpload without If-None-Match (an overwrite) is refused, whoever asks
    assert denied_by(example, Request(BACKUP_ROLE, "s3:PutObject", key, CREATE)) == ["BackupsAreWrittenOnce"]
    assert denied_by(example, Request(RESTORE_ROLE, "s3:PutObject", key, CREATE)) == ["BackupsAreWrittenOnce"]
    # with it, the bucket policy lets the write through (S3 then refuses it if the key exists)
    assert denied_by(example, Request(BACKUP_ROLE, "s3:PutObject", key, WRITE_ONCE)) == []
    # CreateMultipartUpload and UploadPart carry no condition header and create nothing yet
    assert denied_by(example, Request(BACKUP_ROLE, "s3:PutObject", key, {"s3:ObjectCreationOperation": "false"})) == []


def test_every_artifact_format_and_the_manifest_are_history() -> None:
    for ext in ("sqlite.zst", "pgdump.gz", "sql.zst", "tar.zst", "tar", "manifest.json"):
        assert any(f"x.{ext}".endswith(suffix) for suffix in HISTORY_SUFFIXES), ext


def test_records_that_are_replaced_by_design_are_not_history(example: Synthesized) -> None:
    # a sweep or drill record is rewritten at every sweep; a run lock is taken and deleted at every run
    assert denied_by(example, Request(BACKUP_ROLE, "s3:PutObject", SIDECAR, CREATE)) == []
    assert denied_by(example, Request(BACKUP_ROLE, "s3:PutObject", RUN_LOCK, CREATE)) == []
    assert denied_by(example, Request(BACKUP_ROLE, "s3:DeleteObject", RUN_LOCK)) == []


# -- never rewritten --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action",
    [
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        "s3:DeleteObjectTagging",
        "s3:DeleteObjectVersionTagging",
        "s3:PutObjectLegalHold",
        "s3:BypassGovernanceRetention",
    ],
)
@pytest.mark.parametrize("key", [ARTIFACT, MANIFEST])
def test_no_backstop_role_or_writer_deletes_or_unlocks_a_backup(servers: Synthesized, action: str, key: str) -> None:
    key = key.replace("backups/", "db/")
    for principal in (BACKUP_ROLE, RESTORE_ROLE, OPERATOR):
        assert "BackupsAreNeverRewritten" in denied_by(servers, Request(principal, action, key)), principal
    # a named administrator is not refused by the bucket policy (what their own policy allows is theirs)
    assert denied_by(servers, Request(ADMIN, action, key)) == []


def test_without_administrators_nobody_deletes_a_backup(example: Synthesized) -> None:
    for principal in (BACKUP_ROLE, DEPLOY_ROLE, f"{ACCOUNT}:role/Admin"):
        assert "BackupsAreNeverRewritten" in denied_by(example, Request(principal, "s3:DeleteObjectVersion", ARTIFACT))


@pytest.mark.parametrize("action", ["s3:PutObjectTagging", "s3:PutObjectVersionTagging"])
def test_a_written_backup_is_never_retiered(servers: Synthesized, action: str) -> None:
    # re-tagging a yearly backup daily would let lifecycle delete it in days
    key = ARTIFACT.replace("backups/", "db/")
    assert denied_by(servers, Request(BACKUP_ROLE, action, key, TAGGED)) == ["TiersAreNeverRetagged"]
    assert denied_by(servers, Request(OPERATOR, action, key, TAGGED)) == ["TiersAreNeverRetagged"]
    # the tags written with a new object (no existing tags) are not refused
    assert denied_by(servers, Request(BACKUP_ROLE, action, key)) == []
    assert denied_by(servers, Request(ADMIN, action, key, TAGGED)) == []


# -- the keep-last-good guard ------------------------------------------------------------------------


def _retag(existing: str | None, requested: str | None) -> dict[str, str]:
    context = {}
    if existing is not None:
        context["s3:ExistingObjectTag/backstop:tier"] = existing
    if requested is not None:
        context["s3:RequestObjectTag/backstop:tier"] = requested
    return context


@pytest.mark.parametrize("tier", ["daily", "weekly", "monthly", "yearly"])
def test_the_guard_holds_and_releases_a_backup_of_any_tier(servers: Synthesized, tier: str) -> None:
    key = ARTIFACT.replace("backups/", "db/")
    for existing, requested in ((tier, f"held-{tier}"), (f"held-{tier}", tier)):
        request = Request(GUARD_ROLE, "s3:PutObjectVersionTagging", key, _retag(existing, requested))
        assert denied_by(servers, request) == [], (existing, requested)


@pytest.mark.parametrize(
    ("existing", "requested"),
    [
        ("yearly", "daily"),  # lifecycle would delete a yearly backup in days
        ("held-yearly", "daily"),
        ("held-monthly", "held-daily"),
        ("yearly", None),  # no tier: nothing would ever expire it, nor would the guard find its tier again
        ("weekly", "anything-else"),
    ],
)
def test_the_guard_cannot_retier_a_backup(servers: Synthesized, existing: str, requested: str | None) -> None:
    key = ARTIFACT.replace("backups/", "db/")
    for action in ("s3:PutObjectTagging", "s3:PutObjectVersionTagging"):
        refused = denied_by(servers, Request(GUARD_ROLE, action, key, _retag(existing, requested)))
        tier = existing.removeprefix("held-")
        assert refused == [f"TheGuardOnlyHolds{tier.capitalize()}"], (action, refused)


def test_the_guard_deletes_and_writes_no_backup(servers: Synthesized) -> None:
    key = ARTIFACT.replace("backups/", "db/")
    assert "BackupsAreNeverRewritten" in denied_by(servers, Request(GUARD_ROLE, "s3:DeleteObjectVersion", key))
    assert "BackupsAreWrittenOnce" in denied_by(servers, Request(GUARD_ROLE, "s3:PutObject", key, CREATE))


def test_another_role_under_the_writers_path_cannot_hold_a_backup(servers: Synthesized) -> None:
    # holding is re-tagging: only the guard's own path is let through
    key = ARTIFACT.replace("backups/", "db/")
    request = Request(BACKUP_ROLE, "s3:PutObjectVersionTagging", key, _retag("yearly", "held-yearly"))
    assert denied_by(servers, request) == ["TiersAreNeverRetagged"]


# -- configuration -----------------------------------------------------------------------------------


@pytest.mark.parametrize("action", BUCKET_CONFIGURATION)
def test_only_administrators_and_the_deploy_role_configure_the_vault(servers: Synthesized, action: str) -> None:
    for principal in (BACKUP_ROLE, RESTORE_ROLE, OPERATOR, f"{ACCOUNT}:role/PowerUser"):
        assert denied_by(servers, Request(principal, action)) == ["OnlyAdministratorsConfigureTheVault"], principal
    assert denied_by(servers, Request(ADMIN, action)) == []
    assert denied_by(servers, Request(DEPLOY_ROLE, action)) == []


def test_the_configuration_actions_cover_what_could_lose_history() -> None:
    for action in (
        "s3:PutLifecycleConfiguration",
        "s3:PutBucketVersioning",
        "s3:PutBucketPolicy",
        "s3:DeleteBucketPolicy",
        "s3:PutBucketObjectLockConfiguration",
        "s3:PutReplicationConfiguration",
        "s3:PutEncryptionConfiguration",
        "s3:DeleteBucket",
    ):
        assert action in BUCKET_CONFIGURATION


def test_administrators_must_be_role_arns() -> None:
    with pytest.raises(Exception, match="is not an IAM role ARN"):
        parse_config(
            "bucket: b\nstorage: {administrators: [alice]}\ndatabases: [{name: a, engine: sqlite, path: /a.db}]\n"
        )


def test_the_evaluator_knows_every_condition_operator_the_policy_uses(servers: Synthesized) -> None:
    # a statement with an operator the evaluator would skip would make the tests above pass vacuously
    for statement in vault_policy(servers):
        if _transport(statement):
            continue
        for operator in statement.get("Condition", {}):
            assert operator in KNOWN_OPERATORS, statement.get("Sid")
