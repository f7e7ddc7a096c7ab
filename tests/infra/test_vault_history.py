"""History protection in the bucket policy, not only in code: the synthesized policy played against requests.

moto does not evaluate bucket policies, so each request below (who, what action, which key, which
headers) is evaluated against the Deny statements of the vault's synthesized bucket policy by the
small evaluator in tests/infra: IAM's wildcard matching on actions, resources and ``aws:PrincipalArn``,
and the ``Null``, ``Bool``, ``ArnLike``, ``ArnNotLike``, ``StringEquals``, ``StringNotEquals`` and
``StringLikeIfExists`` condition operators the policies use (an operator it does not know
fails the test rather than being ignored). The roles' identity policies, which only narrow further,
are checked in test_scheduled_backups and test_restore_access.
"""

from __future__ import annotations

from typing import Any

import pytest

from backstop.config import parse_config
from infra.backup_vault import BUCKET_CONFIGURATION, HISTORY_SUFFIXES
from tests.infra import KNOWN_OPERATORS, Request, Synthesized, applies, enforces_tls, flatten

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


def vault_policy(synthesized: Synthesized) -> list[dict[str, Any]]:
    return [flatten(s) for s in synthesized.bucket_policy(VAULT_BUCKET)]


def denied_by(synthesized: Synthesized, request: Request) -> list[str]:
    """The Sids of the vault policy's Deny statements that refuse ``request`` (TLS assumed: it is enforced)."""
    return [
        statement.get("Sid", "?")
        for statement in vault_policy(synthesized)
        if statement["Effect"] == "Deny"
        and not enforces_tls(statement)
        and applies(statement, request, f"<{VAULT_BUCKET}.Arn>")
    ]


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
        if enforces_tls(statement):
            continue
        for operator in statement.get("Condition", {}):
            assert operator in KNOWN_OPERATORS, statement.get("Sid")
