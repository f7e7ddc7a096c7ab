"""Retention as S3 lifecycle rules: one per database and tier, days computed from backstop.yaml."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template
from hypothesis import given
from hypothesis import strategies as st

from backstop.adapters.s3_store import S3Store
from backstop.config import Config, Retention, load_config, parse_config
from backstop.errors import ConfigError
from backstop.retention import TIERS, configured_days, expiry_days
from infra.backup_vault import (
    TIER_TAG,
    BackupVault,
    LifecycleRuleLimitError,
    cold_transition_days,
    lifecycle_rule_count,
)
from tests.infra import EXAMPLE_CONFIG, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

VAULT_BUCKET = "VaultBucket0925C477"
GLACIER_IR_AFTER_30_DAYS = [{"StorageClass": "GLACIER_IR", "TransitionInDays": 30}]

# The example backstop.yaml, worked out by hand: orders keeps 7 daily, 4 weekly (x7), 12 monthly (x31)
# and 3 yearly (x366) backups; uploads keeps 14 daily and 6 monthly, and its 0 tiers live as long as
# the tier below them (weekly as daily, yearly as monthly).
EXPECTED_EXPIRY = {
    ("orders", "daily"): 7,
    ("orders", "weekly"): 28,
    ("orders", "monthly"): 372,
    ("orders", "yearly"): 1098,
    ("uploads", "daily"): 14,
    ("uploads", "weekly"): 14,
    ("uploads", "monthly"): 186,
    ("uploads", "yearly"): 186,
}


def lifecycle(template: Template, bucket_id: str = VAULT_BUCKET) -> dict[str, Any]:
    configuration: dict[str, Any] = template.to_json()["Resources"][bucket_id]["Properties"]["LifecycleConfiguration"]
    return configuration


def rules_by_id(template: Template, bucket_id: str = VAULT_BUCKET) -> dict[str, dict[str, Any]]:
    rules = lifecycle(template, bucket_id)["Rules"]
    by_id = {rule["Id"]: rule for rule in rules}
    assert len(by_id) == len(rules), "lifecycle rule ids must be unique"
    return by_id


def config_with(*databases: dict[str, Any], storage: dict[str, Any] | None = None) -> Config:
    document = {"bucket": "backstop-test", "prefix": "backups", "storage": storage or {}, "databases": list(databases)}
    return parse_config(yaml.safe_dump(document))


def vault_template(config: Config) -> Template:
    """A bare stack holding only a vault (no cdk-nag): for storage options the example does not use."""
    stack = Stack(App(), "Test")
    BackupVault(stack, "Vault", config=config)
    return Template.from_stack(stack)


def sqlite(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "engine": "sqlite", "path": f"/data/{name}.db", **fields}


@pytest.mark.parametrize(("database", "tier"), list(EXPECTED_EXPIRY))
def test_each_database_tier_expires_after_its_retention(example: Synthesized, database: str, tier: str) -> None:
    rule = rules_by_id(example.template)[f"{database}-{tier}"]

    assert rule["Status"] == "Enabled"
    assert rule["Prefix"] == f"backups/{database}/"
    assert rule["TagFilters"] == [{"Key": "backstop:tier", "Value": tier}]
    assert rule["ExpirationInDays"] == EXPECTED_EXPIRY[(database, tier)]


def test_rules_cover_every_database_and_tier_of_the_configuration(example: Synthesized) -> None:
    config = load_config(EXAMPLE_CONFIG)
    rules = rules_by_id(example.template)

    expected = {
        f"{db.name}-{tier}": days for db in config.databases for tier, days in expiry_days(db.retention).items()
    }
    assert {rule_id: rules[rule_id]["ExpirationInDays"] for rule_id in expected} == expected
    # and orders' two restore targets keep their safety snapshots restore.safety_snapshot_days, whatever the tier
    safety = {"orders-pre-restore-staging": 30, "orders-pre-restore-in-place": 30}
    assert {rule_id: rules[rule_id]["ExpirationInDays"] for rule_id in safety} == safety
    assert rules["orders-pre-restore-staging"]["Prefix"] == "backups/orders-pre-restore-staging/"
    assert "TagFilters" not in rules["orders-pre-restore-staging"]
    # housekeeping, locks, failures
    assert len(rules) == lifecycle_rule_count(config) == len(expected) + len(safety) + 3


@pytest.mark.parametrize("database", ["orders", "uploads"])
def test_monthly_and_yearly_backups_move_to_glacier_instant_retrieval_after_30_days(
    example: Synthesized, database: str
) -> None:
    rules = rules_by_id(example.template)

    assert rules[f"{database}-monthly"]["Transitions"] == GLACIER_IR_AFTER_30_DAYS
    assert rules[f"{database}-yearly"]["Transitions"] == GLACIER_IR_AFTER_30_DAYS
    assert "Transitions" not in rules[f"{database}-daily"]
    assert "Transitions" not in rules[f"{database}-weekly"]


def test_manifests_and_other_small_objects_never_leave_standard_storage(example: Synthesized) -> None:
    assert lifecycle(example.template)["TransitionDefaultMinimumObjectSize"] == "all_storage_classes_128K"


@pytest.mark.parametrize(
    "rule",
    [
        pytest.param(
            {
                "Id": "backstop-housekeeping",
                "Status": "Enabled",
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1},
                "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                "ExpiredObjectDeleteMarker": True,
            },
            id="stale-uploads-aborted-old-versions-and-delete-markers-purged",
        ),
        pytest.param(
            {
                "Id": "backstop-locks",
                "Status": "Enabled",
                "Prefix": "backups/_locks/",
                "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                "ExpiredObjectDeleteMarker": True,
            },
            id="released-run-locks-leave-no-versions-or-delete-markers",
        ),
        pytest.param(
            {
                "Id": "backstop-failures",
                "Status": "Enabled",
                "Prefix": "backups/_failures/",
                "ExpirationInDays": 14,  # the longest daily retention
            },
            id="failure-records-expire-with-the-longest-daily-retention",
        ),
    ],
)
def test_housekeeping_rules_keep_the_vault_tidy(example: Synthesized, rule: dict[str, Any]) -> None:
    assert rules_by_id(example.template)[rule["Id"]] == rule


@pytest.mark.parametrize("tier", TIERS)
def test_rules_filter_on_the_tag_the_runtime_writes(tier: str) -> None:
    tags = S3Store.tags_for("orders", "sqlite", tier)  # type: ignore[arg-type]  # tier is a Tier literal

    assert tags[TIER_TAG] == tier


def test_a_zero_tier_is_kept_as_long_as_the_tier_below() -> None:
    retention = Retention(daily=10, weekly=0, monthly=2, yearly=0)

    assert expiry_days(retention) == {"daily": 10, "weekly": 10, "monthly": 62, "yearly": 62}


@given(
    daily=st.integers(1, 3650),
    weekly=st.integers(0, 520),
    monthly=st.integers(0, 1200),
    yearly=st.integers(0, 100),
)
def test_no_tier_expires_before_a_lower_tier_or_before_its_configured_age(
    daily: int, weekly: int, monthly: int, yearly: int
) -> None:
    retention = Retention(daily=daily, weekly=weekly, monthly=monthly, yearly=yearly)

    days = expiry_days(retention)
    configured = configured_days(retention)

    assert [days[tier] for tier in TIERS] == sorted(days[tier] for tier in TIERS)
    assert all(days[tier] >= configured[tier] for tier in TIERS)  # type: ignore[index]  # tier is a Tier literal
    assert days["daily"] == configured["daily"] >= 1


@pytest.mark.parametrize(
    ("expire_after", "cold_after", "storage_class", "expected"),
    [
        (372, 30, s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, 30),
        (30, 30, s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, None),  # not earlier than the expiry
        (20, 30, s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, None),
        (119, 30, s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, None),  # 89 days cold: billed for 90 anyway
        (120, 30, s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, 30),
        (209, 30, s3.StorageClass.DEEP_ARCHIVE, None),  # 179 days: Deep Archive bills 180
        (210, 30, s3.StorageClass.DEEP_ARCHIVE, 30),
    ],
)
def test_cold_storage_only_when_objects_stay_there_long_enough(
    expire_after: int, cold_after: int, storage_class: s3.StorageClass, expected: int | None
) -> None:
    assert cold_transition_days(expire_after, cold_after, storage_class) == expected


def test_short_monthly_retention_stays_in_standard_storage() -> None:
    config = config_with(sqlite("ledger", retention={"daily": 7, "weekly": 4, "monthly": 2, "yearly": 0}))

    rules = rules_by_id(vault_template(config))

    assert rules["ledger-monthly"]["ExpirationInDays"] == 62
    assert "Transitions" not in rules["ledger-monthly"]  # 32 days in Glacier IR would be billed as 90


def test_yearly_backups_can_go_to_deep_archive_after_a_chosen_age() -> None:
    config = config_with(sqlite("ledger"), storage={"yearly_storage_class": "DEEP_ARCHIVE", "cold_after_days": 60})

    rules = rules_by_id(vault_template(config))

    assert rules["ledger-yearly"]["Transitions"] == [{"StorageClass": "DEEP_ARCHIVE", "TransitionInDays": 60}]
    assert rules["ledger-monthly"]["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 60}]


def test_configuration_refuses_a_yearly_storage_class_that_is_not_cold() -> None:
    with pytest.raises(ConfigError, match=r"storage\.yearly_storage_class: Input should be 'GLACIER_IR', 'GLACIER'"):
        config_with(sqlite("ledger"), storage={"yearly_storage_class": "STANDARD_IA"})


def test_noncurrent_versions_are_kept_for_the_configured_window() -> None:
    config = config_with(sqlite("ledger"), storage={"noncurrent_days": 90})

    rules = rules_by_id(vault_template(config))

    assert rules["backstop-housekeeping"]["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}


def test_one_vault_holds_249_databases_in_999_rules() -> None:
    config = config_with(*(sqlite(f"db{i:03d}") for i in range(249)))

    BackupVault(Stack(App(), "Test"), "Vault", config=config)  # accepted: no LifecycleRuleLimitError

    assert lifecycle_rule_count(config) == 999


def test_vault_refuses_more_databases_than_s3_lifecycle_rules_allow() -> None:
    config = config_with(*(sqlite(f"db{i:03d}") for i in range(250)))

    with pytest.raises(LifecycleRuleLimitError, match=r"250 databases, which needs 1003 .* at most 249 databases"):
        vault_template(config)
