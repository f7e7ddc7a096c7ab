"""Who may write to the vault, and Object Lock: the bucket policy, the roles' paths, the lock against lifecycle."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aws_cdk import App, Stack
from aws_cdk.assertions import Template

from backstop.config import Config, parse_config
from infra.backup_vault import GUARDED_ACTIONS, BackupVault, ObjectLockConflictError, check_object_lock
from tests.infra import Synthesized, flatten

pytestmark = pytest.mark.xdist_group("infra")

VAULT_BUCKET = "VaultBucket0925C477"


def writers_statement(synthesized: Synthesized) -> dict[str, Any]:
    (statement,) = [s for s in synthesized.bucket_policy(VAULT_BUCKET) if s.get("Sid") == "OnlyBackstopWritesBackups"]
    flat: dict[str, Any] = flatten(statement)
    return flat


def config_with(lock: dict[str, Any] | None, noncurrent_days: int = 30, daily: int = 7) -> Config:
    document = {
        "bucket": "backstop-test",
        "storage": {"object_lock": lock, "noncurrent_days": noncurrent_days},
        "databases": [
            {"name": "orders", "engine": "sqlite", "path": "/data/orders.db", "retention": {"daily": daily}},
            {"name": "ledger", "engine": "sqlite", "path": "/data/ledger.db", "retention": {"daily": 30}},
        ],
    }
    return parse_config(yaml.safe_dump(document))


# -- only Backstop writes backups -------------------------------------------------------------------


def test_nobody_but_the_backstop_roles_may_write_delete_retag_or_relock_backups(example: Synthesized) -> None:
    statement = writers_statement(example)

    assert statement["Effect"] == "Deny"
    assert statement["Principal"] == {"AWS": "*"}
    assert statement["Action"] == list(GUARDED_ACTIONS)
    assert statement["Resource"] == f"<{VAULT_BUCKET}.Arn>/backups/*"
    assert statement["Condition"] == {
        "ArnNotLike": {"aws:PrincipalArn": ["arn:<AWS::Partition>:iam::<AWS::AccountId>:role/backstop/Backstop/*"]}
    }


def test_configured_writers_are_let_through_as_well(servers: Synthesized) -> None:
    allowed = writers_statement(servers)["Condition"]["ArnNotLike"]["aws:PrincipalArn"]

    assert allowed == [
        "arn:<AWS::Partition>:iam::<AWS::AccountId>:role/backstop/Backstop/*",
        "arn:aws:iam::123456789012:role/backstop-operator",
        "arn:aws:iam::123456789012:role/vault-admin",  # administrators repair and re-tag
    ]
    assert writers_statement(servers)["Resource"] == f"<{VAULT_BUCKET}.Arn>/db/*"


def test_only_the_backup_and_restore_roles_live_on_the_writers_path(example: Synthesized) -> None:
    roles = example.of_type("AWS::IAM::Role")
    on_path = {k for k, r in roles.items() if r["Properties"].get("Path") == "/backstop/Backstop/"}
    on_guard_path = {k for k, r in roles.items() if r["Properties"].get("Path") == "/backstop/Backstop/guard/"}
    # the backup functions, the restore function (it writes safety snapshots through the backup path), and
    # the drills and the sweep (each writes only its record beside a backup)
    writers = ("BackupsordersRole", "BackupsuploadsRole", "RestoreRole", "VerificationDrill", "VerificationSweepRole")
    backup_roles = {k for k in roles if k.startswith(writers) and "ScheduleRole" not in k}

    assert len(backup_roles) == 6
    assert on_path == backup_roles
    # the keep-last-good guard, the one role the bucket policy lets move a tier tag (held <-> released)
    assert {k for k in on_guard_path if not k.startswith("VerificationGuardRole")} == set()
    assert len(on_guard_path) == 1
    assert all(
        r["Properties"].get("Path") in (None, "/backstop/Backstop/", "/backstop/Backstop/guard/")
        for r in roles.values()
    )


def test_lifecycle_housekeeping_still_reaches_every_version(example: Synthesized) -> None:
    # Lifecycle is not subject to bucket policies: the denial cannot keep expired backups forever.
    rules = example.resources[VAULT_BUCKET]["Properties"]["LifecycleConfiguration"]["Rules"]

    assert any("NoncurrentVersionExpiration" in rule and "Prefix" not in rule for rule in rules)


# -- Object Lock ------------------------------------------------------------------------------------------


def test_without_object_lock_the_bucket_has_none(example: Synthesized) -> None:
    props = example.resources[VAULT_BUCKET]["Properties"]

    assert "ObjectLockEnabled" not in props
    assert "ObjectLockConfiguration" not in props


def test_object_lock_locks_every_new_version_in_the_configured_mode(servers: Synthesized) -> None:
    props = servers.resources[VAULT_BUCKET]["Properties"]

    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"] == {
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 10}},
    }


def test_governance_mode_is_written_as_such() -> None:
    stack = Stack(App(), "Test")
    BackupVault(stack, "Vault", config=config_with({"mode": "governance", "days": 5}))

    Template.from_stack(stack).has_resource_properties(
        "AWS::S3::Bucket",
        {
            "ObjectLockConfiguration": {
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 5}},
            }
        },
    )


def test_a_lock_as_long_as_lifecycle_keeps_the_shortest_lived_version_is_accepted() -> None:
    check_object_lock(config_with({"mode": "compliance", "days": 37}))  # orders: 7 daily + 30 noncurrent


def test_a_lock_that_outlives_what_lifecycle_keeps_is_refused_with_the_numbers() -> None:
    with pytest.raises(ObjectLockConflictError) as caught:
        BackupVault(Stack(App(), "Test"), "Vault", config=config_with({"mode": "compliance", "days": 38}))

    assert str(caught.value) == (
        "storage.object_lock.days (38) is longer than the 37 days after which lifecycle deletes orders's daily "
        "backups (7 days of retention + storage.noncurrent_days 30): lock for at most 37 days or keep daily "
        "backups longer."
    )


def test_the_check_follows_the_noncurrent_window_and_the_shortest_daily_retention() -> None:
    check_object_lock(config_with({"mode": "governance", "days": 97}, noncurrent_days=90))
    with pytest.raises(ObjectLockConflictError, match=r"lock for at most 31 days"):
        check_object_lock(config_with({"mode": "governance", "days": 32}, noncurrent_days=30, daily=1))


def test_a_lock_that_outlives_the_safety_snapshots_is_refused_naming_them() -> None:
    document = {
        "bucket": "backstop-test",
        "storage": {"object_lock": {"mode": "compliance", "days": 40}, "noncurrent_days": 30},
        "restore": {"safety_snapshot_days": 7},
        "databases": [
            {
                "name": "ledger",
                "engine": "sqlite",
                "path": "/data/ledger.db",
                "retention": {"daily": 30},
                "restore_targets": {"in-place": {}},
            }
        ],
    }
    with pytest.raises(ObjectLockConflictError) as caught:
        check_object_lock(parse_config(yaml.safe_dump(document)))

    assert "lifecycle deletes restores' safety snapshots (7 days of retention" in str(caught.value)
    assert "keep restore.safety_snapshot_days longer" in str(caught.value)
