"""Manifests in the bucket: written once, never overwritten, and refused when altered."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
import pytest
from botocore.exceptions import ConnectionClosedError

from backstop.adapters.s3_store import MIB, S3Store
from backstop.errors import BackstopError, BackupNotFoundError, ChecksumMismatchError, ManifestError, StorageError
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from tests.conftest import BUCKET, REGION, create_orders_db
from tests.unit.test_manifest import sample_manifest

BACKUP_ID = "orders-20261121T020000Z"
MANIFEST_KEY = f"backups/orders/2026/11/21/{BACKUP_ID}.manifest.json"
AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


def test_manifest_is_stored_beside_its_artifact_and_reads_back(store: S3Store, s3: Any) -> None:
    manifest = sample_manifest(BACKUP_ID)

    created = store.put_manifest(manifest, store.tags_for("orders", "sqlite", "daily"))

    assert created
    assert store.manifest_key(BACKUP_ID) == MANIFEST_KEY
    assert store.object_key(BACKUP_ID, "sqlite.zst") == manifest.object.key
    assert store.get_manifest(BACKUP_ID) == manifest
    assert store.manifest_exists(BACKUP_ID)
    assert s3.head_object(Bucket=BUCKET, Key=MANIFEST_KEY)["ContentType"] == "application/json"


def test_manifest_carries_the_tier_tags(store: S3Store, s3: Any) -> None:
    store.put_manifest(sample_manifest(BACKUP_ID, tier="weekly"), store.tags_for("orders", "sqlite", "weekly"))

    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=MANIFEST_KEY)["TagSet"]}
    assert tags["backstop:tier"] == "weekly"


def test_manifest_is_never_overwritten(store: S3Store, s3: Any) -> None:
    first = sample_manifest(BACKUP_ID, size=1000, trigger=Trigger(kind="schedule", by="first delivery"))
    second = sample_manifest(BACKUP_ID, size=2000, trigger=Trigger(kind="schedule", by="second delivery"))
    store.put_manifest(first, {})

    created = store.put_manifest(second, {})

    assert created is False
    assert store.get_manifest(BACKUP_ID) == first
    assert len(s3.list_object_versions(Bucket=BUCKET, Prefix=MANIFEST_KEY)["Versions"]) == 1


def test_manifest_is_encrypted_with_the_configured_kms_key(s3: Any) -> None:
    key_arn = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
    store = S3Store(s3, bucket=BUCKET, prefix="backups", kms_key_id=key_arn, part_size=5 * MIB)

    store.put_manifest(sample_manifest(BACKUP_ID), {})

    head = s3.head_object(Bucket=BUCKET, Key=MANIFEST_KEY)
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", key_arn)


def test_missing_manifest_means_no_backup(store: S3Store) -> None:
    with pytest.raises(BackupNotFoundError, match="never committed"):
        store.get_manifest(BACKUP_ID)

    assert not store.manifest_exists(BACKUP_ID)


def test_manifest_edited_in_the_bucket_is_refused(store: S3Store, s3: Any) -> None:
    store.put_manifest(sample_manifest(BACKUP_ID), {})
    data = json.loads(s3.get_object(Bucket=BUCKET, Key=MANIFEST_KEY)["Body"].read())
    data["object"]["size"] += 1
    s3.put_object(Bucket=BUCKET, Key=MANIFEST_KEY, Body=json.dumps(data).encode())

    with pytest.raises(ManifestError, match="fails its own checksum") as caught:
        store.get_manifest(BACKUP_ID)

    assert f"s3://{BUCKET}/{MANIFEST_KEY}" in str(caught.value)


def test_truncated_manifest_in_the_bucket_is_refused(store: S3Store, s3: Any) -> None:
    body = sample_manifest(BACKUP_ID).to_json()
    s3.put_object(Bucket=BUCKET, Key=MANIFEST_KEY, Body=body[: len(body) // 2])

    with pytest.raises(ManifestError, match="not valid JSON"):
        store.get_manifest(BACKUP_ID)


def test_manifest_of_another_backup_under_this_name_is_refused(store: S3Store, s3: Any) -> None:
    other = sample_manifest("orders-20261120T020000Z")
    s3.put_object(Bucket=BUCKET, Key=MANIFEST_KEY, Body=other.to_json())

    with pytest.raises(ManifestError, match="describes orders-20261120T020000Z"):
        store.get_manifest(BACKUP_ID)


def test_object_is_read_at_exactly_the_recorded_version(store: S3Store, s3: Any) -> None:
    key = store.object_key(BACKUP_ID, "sqlite.zst")
    first = s3.put_object(Bucket=BUCKET, Key=key, Body=b"the committed bytes")["VersionId"]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"a later overwrite")

    assert b"".join(store.read_object(key, first)) == b"the committed bytes"
    assert store.object_size(key, first) == len(b"the committed bytes")


def test_object_whose_recorded_version_is_gone_is_reported(store: S3Store, s3: Any) -> None:
    key = store.object_key(BACKUP_ID, "sqlite.zst")
    version = s3.put_object(Bucket=BUCKET, Key=key, Body=b"bytes")["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version)

    with pytest.raises(ChecksumMismatchError, match="missing from the bucket"):
        store.read_object(key, version)
    assert store.object_size(key, version) is None


def test_manifests_are_listed_oldest_first_and_checked(store: S3Store, s3: Any) -> None:
    ids = ["orders-20251231T020000Z", "orders-20260101T020000Z", "orders-20260102T020000Z"]
    for backup_id in reversed(ids):
        store.put_manifest(sample_manifest(backup_id), {})

    assert [m.backup_id for m in store.manifests("orders")] == ids

    key = store.manifest_key(ids[1])
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"format_version": 1}')
    with pytest.raises(ManifestError):
        store.manifests("orders")


class RecordingNotifier:
    """Keeps every alert the service publishes."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, object]]] = []

    def publish(self, subject: str, message: dict[str, object]) -> None:
        self.alerts.append((subject, message))


def drop_manifest_writes(s3: Any) -> list[str]:
    """Every attempt to write a manifest loses its connection; other writes go through."""
    attempts: list[str] = []

    def drop(request: Any, **_: Any) -> None:
        if urlparse(request.url).path.endswith(".manifest.json"):
            attempts.append(request.url)
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.PutObject", drop)
    return attempts


def test_manifest_write_losing_its_connection_fails_the_backup_with_an_alert(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path
) -> None:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db"))})
    notifier = RecordingNotifier()
    attempts = drop_manifest_writes(s3)
    service = BackupService(config, store, notifier=notifier)

    with pytest.raises(BackstopError):
        service.run(BackupRequest("orders", AT, "scheduled", Trigger(kind="schedule", by="test")))

    assert len(attempts) == 3
    assert store.newest_backup_id("orders") is None
    assert [message["event"] for _, message in notifier.alerts] == ["backup_failed"]
    assert store.failure_count("orders") == 1


def test_manifest_write_losing_its_connection_commits_nothing(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path
) -> None:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db"))})
    drop_manifest_writes(s3)

    with pytest.raises(StorageError):
        BackupService(config, store).run(BackupRequest("orders", AT, "scheduled", Trigger(kind="schedule", by="t")))

    assert store.newest_backup_id("orders") is None
    assert not store.manifest_exists("orders-20261121T020000Z")
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="backups/_locks/")["KeyCount"] == 0
