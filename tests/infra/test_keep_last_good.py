"""Keep-last-good: an outage longer than every tier's retention still leaves the newest good backups.

moto never applies lifecycle, so the vault's lifecycle rules, as synthesized for the configuration,
are evaluated here against the objects the real backup service wrote to moto (their tags, their age
on the day the evaluation pretends it is): a current version whose age reaches the ``ExpirationInDays``
of a rule whose prefix and tags it matches is expired.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk.assertions import Template
from pydantic import TypeAdapter

from backstop.adapters.s3_store import S3Store
from backstop.config import Config, Database, load_config
from backstop.config.catalog import digest
from backstop.manifest import Trigger
from backstop.retention import BACKUP_TAG_KEYS, TIERS
from backstop.services.backup import BackupRequest, BackupService
from backstop.services.retention_guard import RetentionGuard
from infra.backup_vault import BackupVault
from tests.conftest import BUCKET
from tests.infra import EXAMPLE_CONFIG, Synthesized, flatten, listed
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("infra")

FOUR_YEARS = timedelta(days=4 * 366)
"""Longer than every tier's retention with the defaults (3 yearly = 1098 days)."""


def lifecycle_rules(config: Config) -> list[dict[str, Any]]:
    """The vault's lifecycle rules as synthesized for ``config``."""
    stack = Stack(App(), "Vault")
    BackupVault(stack, "Vault", config=config)
    for resource in Template.from_stack(stack).to_json()["Resources"].values():
        if resource["Type"] == "AWS::S3::Bucket" and resource["Properties"].get("BucketName") == config.bucket:
            rules: list[dict[str, Any]] = resource["Properties"]["LifecycleConfiguration"]["Rules"]
            return rules
    raise AssertionError("no vault bucket")


def expired_by_lifecycle(s3: Any, rules: list[dict[str, Any]], today: datetime) -> set[str]:
    """The current versions' keys that some enabled rule expires on ``today``."""
    expired = set()
    for version in s3.list_object_versions(Bucket=BUCKET).get("Versions", []):
        if not version["IsLatest"]:
            continue
        key = version["Key"]
        tags = {
            t["Key"]: t["Value"]
            for t in s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=version["VersionId"])["TagSet"]
        }
        age = (today - version["LastModified"]).days
        for rule in rules:
            if rule.get("Status") != "Enabled" or "ExpirationInDays" not in rule:
                continue
            if not key.startswith(rule.get("Prefix", "")):
                continue
            if any(tags.get(f["Key"]) != f["Value"] for f in rule.get("TagFilters", [])):
                continue
            if age >= rule["ExpirationInDays"]:
                expired.add(key)
    return expired


def surviving(store: S3Store, s3: Any, rules: list[dict[str, Any]], today: datetime) -> list[str]:
    """Backup ids whose artifact and manifest both survive lifecycle on ``today``."""
    gone = expired_by_lifecycle(s3, rules, today)
    alive = []
    for manifest in store.manifests("orders"):
        if manifest.object.key not in gone and store.manifest_key(manifest.backup_id) not in gone:
            alive.append(manifest.backup_id)
    return alive


def config_for(make_config: Any, orders_db: Path, keep_last: int | None = None) -> Config:
    retention: dict[str, Any] = {} if keep_last is None else {"keep_last": keep_last}
    config: Config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db), "retention": retention})
    return config


def test_an_outage_longer_than_every_retention_keeps_the_newest_good_backups(
    make_config: Any, orders_db: Path, store: S3Store, s3: Any
) -> None:
    # given ten days of backups (yearly, weekly and daily tiers), then nothing: backups stopped
    config = config_for(make_config, orders_db)
    ids = [run_backup(config, store, at(day)).manifest.backup_id for day in range(10, 20)]
    rules = lifecycle_rules(config)
    four_years_on = datetime.now(UTC) + FOUR_YEARS

    # when lifecycle runs four years later without the guard, every backup is gone (the fault)
    assert surviving(store, s3, rules, four_years_on) == []

    # and with the guard run (as its schedule does, every day of the outage)
    report = RetentionGuard.of(config, store).run()

    # then the newest three (retention.keep_last's default) are untouched by lifecycle
    assert report.held["orders"] == ids[-3:]
    assert surviving(store, s3, rules, four_years_on) == ids[-3:]


def test_newer_good_backups_return_the_older_ones_to_normal_retention(
    make_config: Any, orders_db: Path, store: S3Store, s3: Any
) -> None:
    # given a guard that held the newest two of five backups
    config = config_for(make_config, orders_db, keep_last=2)
    first = [run_backup(config, store, at(day)).manifest.backup_id for day in range(10, 15)]
    RetentionGuard.of(config, store).run()

    # when backups resume and the guard runs again
    later = [run_backup(config, store, at(day)).manifest.backup_id for day in range(20, 23)]
    report = RetentionGuard.of(config, store).run()

    # then the new newest two are held, the earlier two are released and age out as usual
    assert report.held["orders"] == later[-2:]
    assert sorted(report.released) == first[-2:]
    assert surviving(store, s3, lifecycle_rules(config), datetime.now(UTC) + FOUR_YEARS) == later[-2:]


def test_a_backup_the_sweep_found_corrupt_is_not_one_of_the_last_good(
    make_config: Any, orders_db: Path, store: S3Store
) -> None:
    # given the newest backup recorded corrupt by the verification sweep
    config = config_for(make_config, orders_db, keep_last=2)
    ids = [run_backup(config, store, at(day)).manifest.backup_id for day in range(10, 14)]
    store.put_sidecar(store.get_manifest(ids[-1]), "sweep", {"passed": False, "finding": "corrupt"})

    # when the guard runs, it holds the two newest good ones instead
    assert RetentionGuard.of(config, store).run().held["orders"] == ids[-3:-1]


def test_a_backup_dated_in_the_future_is_not_one_of_the_last_good(
    make_config: Any, orders_db: Path, store: S3Store
) -> None:
    # given a backup that claims a date years ahead, taken by a service whose clock was wrong too
    config = config_for(make_config, orders_db, keep_last=1)
    good = run_backup(config, store, at(10)).manifest
    ahead = datetime(2099, 1, 1, 2, tzinfo=UTC)
    BackupService(config, store, clock=lambda: ahead).run(
        BackupRequest("orders", ahead, "scheduled", Trigger(kind="schedule", by="test"))
    )
    assert store.newest_backup_id("orders") == "orders-20990101T020000Z"

    # when the guard runs, the genuine backup is the one held
    assert RetentionGuard.of(config, store).run().held["orders"] == [good.backup_id]


def test_the_guard_changes_only_the_tier_tag(make_config: Any, orders_db: Path, store: S3Store, s3: Any) -> None:
    config = config_for(make_config, orders_db, keep_last=1)
    manifest = run_backup(config, store, at(10)).manifest
    before = s3.get_object_tagging(Bucket=BUCKET, Key=manifest.object.key, VersionId=manifest.object.version_id)

    RetentionGuard.of(config, store).run()

    after = s3.get_object_tagging(Bucket=BUCKET, Key=manifest.object.key, VersionId=manifest.object.version_id)
    changed = {t["Key"]: t["Value"] for t in after["TagSet"]}
    assert changed == {**{t["Key"]: t["Value"] for t in before["TagSet"]}, "backstop:tier": "held-yearly"}


# -- the deployed guard ----------------------------------------------------------------------------


def guard_statements(example: Synthesized) -> list[dict[str, Any]]:
    _, policy = example.one("AWS::IAM::Policy", "VerificationGuardRoleDefaultPolicy")
    return [flatten(s) for s in policy["Properties"]["PolicyDocument"]["Statement"]]


def test_the_guards_only_write_is_a_tier_tag_moved_between_a_tier_and_its_held_tier(example: Synthesized) -> None:
    writes = [
        s
        for s in guard_statements(example)
        if any(a.startswith("s3:") and not a.startswith(("s3:Get", "s3:List")) for a in listed(s["Action"]))
    ]

    assert [s["Sid"] for s in writes] == [f"HoldAndRelease{tier.capitalize()}" for tier in TIERS]
    for statement, tier in zip(writes, TIERS, strict=True):
        assert listed(statement["Action"]) == ["s3:PutObjectVersionTagging"]
        assert statement["Condition"] == {
            "StringEquals": {
                "s3:ExistingObjectTag/backstop:tier": [tier, f"held-{tier}"],
                "s3:RequestObjectTag/backstop:tier": [tier, f"held-{tier}"],
            },
            "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": list(BACKUP_TAG_KEYS)},
        }


def test_the_guard_runs_every_six_hours_on_its_environment_alone(example: Synthesized) -> None:
    _, function = example.one("AWS::Lambda::Function", "VerificationGuard")
    environment = example.environment("VerificationGuard")
    _, schedule = example.one("AWS::Scheduler::Schedule", "VerificationGuardSchedule")

    assert function["Properties"]["ImageConfig"]["Command"] == ["backstop.handlers.retention_guard.handler"]
    assert set(environment) == {
        "BACKSTOP_BUCKET",
        "BACKSTOP_PREFIX",
        "BACKSTOP_KMS_KEY_ID",
        "BACKSTOP_ALERTS_TOPIC_ARN",
        "BACKSTOP_CATALOG",
        "BACKSTOP_CATALOG_DIGEST",
    }
    # the databases and their retention are the catalog this deploy wrote
    assert environment["BACKSTOP_CATALOG_DIGEST"] == digest(example.catalog())
    databases = example.catalog_databases()
    deployed = {name: TypeAdapter(Database).validate_python(db).retention for name, db in databases.items()}
    assert deployed == {db.name: db.retention for db in load_config(EXAMPLE_CONFIG).databases}
    assert schedule["Properties"]["ScheduleExpression"] == "rate(6 hours)"
    assert json.loads(schedule["Properties"]["Target"]["Input"]) == {"checked_at": "<aws.scheduler.scheduled-time>"}
    _, role = example.one("AWS::IAM::Role", "VerificationGuardRole")
    assert role["Properties"]["Path"] == "/backstop/Backstop/guard/"
