"""Object Lock per tier: every artifact and manifest is locked, when written, until its own tier expires.

The vault here is a bucket created with Object Lock, as the stack creates it with ``storage.object_lock``;
moto enforces the lock on deletes, so the refusal below is S3's own.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.retention import expiry_days
from tests.conftest import BUCKET, REGION
from tests.services import at, run_backup

MIB = 1024 * 1024


@pytest.fixture
def s3() -> Iterator[Any]:
    """The vault with Object Lock enabled (and so versioned) and no default retention."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
        yield client


@pytest.fixture
def store(s3: Any) -> S3Store:
    return S3Store(s3, bucket=BUCKET, prefix="backups", part_size=5 * MIB, concurrency=2)


def locked(make_config: Any, orders_db: Path, mode: str = "governance") -> Config:
    config: Config = make_config(
        {"name": "orders", "engine": "sqlite", "path": str(orders_db), "retention": {"daily": 7, "weekly": 4}},
        storage={"object_lock": {"mode": mode}},
    )
    return config


def lock_of(s3: Any, key: str, version_id: str | None) -> tuple[str | None, datetime | None]:
    head = s3.head_object(Bucket=BUCKET, Key=key, VersionId=version_id)
    return head.get("ObjectLockMode"), head.get("ObjectLockRetainUntilDate")


def manifest_version(s3: Any, store: S3Store, backup_id: str) -> str:
    return str(s3.head_object(Bucket=BUCKET, Key=store.manifest_key(backup_id))["VersionId"])


def test_each_backup_is_locked_until_its_own_tier_expires(
    make_config: Any, orders_db: Path, store: S3Store, s3: Any
) -> None:
    # given a vault with Object Lock in governance mode, and retention of 7 daily and 4 weekly backups
    config = locked(make_config, orders_db)
    days = expiry_days(config.database("orders").retention)

    # when the first backup (yearly) and one the next day, in the same week (daily), are taken
    before = datetime.now(UTC)
    yearly = run_backup(config, store, at(21)).manifest
    daily = run_backup(config, store, at(22)).manifest
    after = datetime.now(UTC)

    # then artifact and manifest of each are locked until exactly their tier's expiry, in governance mode
    for manifest, tier in ((yearly, "yearly"), (daily, "daily")):
        assert manifest.retention_tier == tier
        for key, version in (
            (manifest.object.key, manifest.object.version_id),
            (store.manifest_key(manifest.backup_id), manifest_version(s3, store, manifest.backup_id)),
        ):
            mode, until = lock_of(s3, key, version)
            assert mode == "GOVERNANCE"
            assert until is not None
            assert before + timedelta(days=days[tier]) - timedelta(seconds=1) <= until
            assert until <= after + timedelta(days=days[tier]) + timedelta(seconds=1)
    assert days["yearly"] > 1000 and days["daily"] == 7  # the yearly one is not capped by the daily tier


def test_a_locked_backup_cannot_be_deleted_without_bypassing_governance(
    make_config: Any, orders_db: Path, store: S3Store, s3: Any
) -> None:
    # given a committed, locked backup
    manifest = run_backup(locked(make_config, orders_db), store, at(21)).manifest

    # when anyone tries to delete its artifact's version or its manifest's version
    for key, version in (
        (manifest.object.key, manifest.object.version_id),
        (store.manifest_key(manifest.backup_id), manifest_version(s3, store, manifest.backup_id)),
    ):
        with pytest.raises(ClientError) as refused:
            s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)

        # then S3 refuses, and the version is still there
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert s3.head_object(Bucket=BUCKET, Key=key, VersionId=version)["ContentLength"] > 0


def test_compliance_mode_is_asked_for_by_name(make_config: Any, orders_db: Path, store: S3Store, s3: Any) -> None:
    manifest = run_backup(locked(make_config, orders_db, "compliance"), store, at(21)).manifest

    assert lock_of(s3, manifest.object.key, manifest.object.version_id)[0] == "COMPLIANCE"


def test_without_object_lock_nothing_is_locked(make_config: Any, orders_db: Path, store: S3Store, s3: Any) -> None:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})

    manifest = run_backup(config, store, at(21)).manifest

    assert lock_of(s3, manifest.object.key, manifest.object.version_id) == (None, None)


def test_a_lock_s3_dropped_from_a_multipart_upload_is_set_on_the_version(
    make_config: Any, orders_db: Path, store: S3Store, s3: Any
) -> None:
    # given S3 (here the emulator, which drops it) not applying the lock asked for when the upload started
    config = locked(make_config, orders_db)
    asked: list[str] = []
    s3.meta.events.register("before-call.s3.PutObjectRetention", lambda **_: asked.append("retention"))

    # when a backup is taken
    manifest = run_backup(config, store, at(21)).manifest

    # then the read-back noticed and locked the version itself
    assert asked == ["retention"]
    assert lock_of(s3, manifest.object.key, manifest.object.version_id)[0] == "GOVERNANCE"
