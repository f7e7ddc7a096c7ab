"""`backstop repair`: the pinned, verified version becomes the key's current version again, with its tags.

Every fault is played on a real committed backup in moto (a stray write over the key, a delete marker,
changed tags, a forged manifest); the outcome is read back the way a person would: a GET without a
version returns the genuine bytes under the version id the manifest pins, and the intruder's bytes wait
in quarantine (docs/storage.md "Overwritten keys: detection and repair").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import BackupNotFoundError, ChecksumMismatchError, InvalidNameError, StorageError
from backstop.manifest import Manifest
from backstop.services.repair import RepairService
from backstop.services.sweep import SweepService
from backstop.services.verify import VerifyService
from tests.conftest import BUCKET, REGION, create_orders_db
from tests.services import RecordingNotifier, at, keys_under, replace_artifact, rot_object, run_backup, stored_bytes

SWEPT_AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def config(make_config: Callable[..., Config], tmp_path: Path) -> Config:
    return make_config({"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db", 300))})


@pytest.fixture
def backup(config: Config, store: S3Store) -> Manifest:
    """One committed backup of orders (21 November)."""
    return run_backup(config, store, at(21)).manifest


def quarantine_key(key: str, version_id: str) -> str:
    """Where repair keeps an intruding version: ``<prefix>/_quarantine/<key below the prefix>/<version_id>``."""
    return f"backups/_quarantine/{key.removeprefix('backups/')}/{version_id}"


def read_current(s3: Any, key: str) -> tuple[bytes, str]:
    """What anyone reading ``key`` without a version gets: its bytes and the version id they came from."""
    response = s3.get_object(Bucket=BUCKET, Key=key)
    return response["Body"].read(), response["VersionId"]


def tags_of(s3: Any, key: str, version_id: str | None) -> dict[str, str]:
    tag_set = s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=version_id)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def test_repair_makes_the_pinned_version_current_again_and_quarantines_the_intruder(
    config: Config, store: S3Store, s3: Any, backup: Manifest
) -> None:
    # given a stray write over the artifact's key
    genuine = stored_bytes(s3, backup)
    intruder = s3.put_object(Bucket=BUCKET, Key=backup.object.key, Body=b"evil")["VersionId"]

    # when the backup is repaired
    report = RepairService(store).repair("orders", backup.backup_id)

    # then a GET without a version returns the genuine bytes, under the very version id the manifest pins
    assert read_current(s3, backup.object.key) == (genuine, backup.object.version_id)
    # and the intruder's bytes are in quarantine, and gone from the key's history
    quarantined = quarantine_key(backup.object.key, intruder)
    assert s3.get_object(Bucket=BUCKET, Key=quarantined)["Body"].read() == b"evil"
    assert report.quarantined == (quarantined,)
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=backup.object.key)
    assert [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == backup.object.key] == [
        backup.object.version_id
    ]
    # and verify, which refused the backup before, passes
    assert VerifyService(config, store).verify("orders", backup.backup_id).manifest == backup


def test_repair_removes_a_delete_marker_without_quarantining_anything(
    store: S3Store, s3: Any, backup: Manifest
) -> None:
    # given a delete marker on the artifact's key
    genuine = stored_bytes(s3, backup)
    s3.delete_object(Bucket=BUCKET, Key=backup.object.key)

    # when the backup is repaired
    report = RepairService(store).repair("orders", backup.backup_id)

    # then the key serves the genuine version again, and there was nothing to copy
    assert read_current(s3, backup.object.key) == (genuine, backup.object.version_id)
    assert report.quarantined == ()
    assert keys_under(s3, "backups/_quarantine/") == []
    assert not s3.list_object_versions(Bucket=BUCKET, Prefix=backup.object.key).get("DeleteMarkers")


def test_repair_undoes_a_pile_of_writes_and_deletes_in_one_run(store: S3Store, s3: Any, backup: Manifest) -> None:
    # given two stray writes and a delete marker between them, over the artifact's key
    genuine = stored_bytes(s3, backup)
    first = s3.put_object(Bucket=BUCKET, Key=backup.object.key, Body=b"first")["VersionId"]
    s3.delete_object(Bucket=BUCKET, Key=backup.object.key)
    second = s3.put_object(Bucket=BUCKET, Key=backup.object.key, Body=b"second")["VersionId"]

    # when the backup is repaired
    report = RepairService(store).repair("orders", backup.backup_id)

    # then the genuine version is current and both intruders are in quarantine with their bytes
    assert read_current(s3, backup.object.key) == (genuine, backup.object.version_id)
    for version_id, body in ((first, b"first"), (second, b"second")):
        assert s3.get_object(Bucket=BUCKET, Key=quarantine_key(backup.object.key, version_id))["Body"].read() == body
    assert len(report.removed) == 3


def test_repair_puts_back_the_tags_lifecycle_filters_on(store: S3Store, s3: Any, backup: Manifest) -> None:
    # given the pinned version re-tagged so that lifecycle would expire it as a daily backup
    expected = store.tags_for("orders", backup.engine, backup.retention_tier)
    assert backup.retention_tier != "daily"
    s3.put_object_tagging(
        Bucket=BUCKET,
        Key=backup.object.key,
        VersionId=backup.object.version_id,
        Tagging={"TagSet": [{"Key": "backstop:tier", "Value": "daily"}]},
    )

    # when the backup is repaired
    report = RepairService(store).repair("orders", backup.backup_id)

    # then the version carries its tier, engine and database tags again
    assert tags_of(s3, backup.object.key, backup.object.version_id) == expected
    assert report.retagged == (backup.object.key,)


def test_repair_of_an_intact_backup_has_nothing_to_repair_and_changes_nothing(
    store: S3Store, s3: Any, backup: Manifest
) -> None:
    # given an untouched backup
    before = s3.list_object_versions(Bucket=BUCKET, Prefix="backups/")

    # when it is repaired, twice
    reports = [RepairService(store).repair("orders", backup.backup_id) for _ in range(2)]

    # then both say there was nothing to repair, and the bucket holds exactly what it held
    assert [r.repaired for r in reports] == [False, False]
    after = s3.list_object_versions(Bucket=BUCKET, Prefix="backups/")
    assert after.get("Versions") == before.get("Versions")
    assert keys_under(s3, "backups/_quarantine/") == []


def test_repair_refuses_to_make_corrupt_bytes_current_and_touches_nothing(
    store: S3Store, s3: Any, backup: Manifest
) -> None:
    # given the pinned version rotted in place, and a stray write over the key
    data = bytearray(stored_bytes(s3, backup))
    data[len(data) // 2] ^= 0x01
    rot_object(backup.object.key, backup.object.version_id, bytes(data))
    intruder = s3.put_object(Bucket=BUCKET, Key=backup.object.key, Body=b"evil")["VersionId"]

    # when the backup is repaired
    with pytest.raises(ChecksumMismatchError) as caught:
        RepairService(store).repair("orders", backup.backup_id)

    # then it refuses, saying why, and the key still serves what it served
    assert "refused" in str(caught.value)
    assert backup.backup_id in str(caught.value)
    assert read_current(s3, backup.object.key) == (b"evil", intruder)
    assert keys_under(s3, "backups/_quarantine/") == []


def test_repair_brings_back_the_manifest_the_sweep_verified_and_its_artifact(
    config: Config, store: S3Store, s3: Any, backup: Manifest
) -> None:
    # given a sweep that verified the backup, then a consistent forgery over both its keys
    SweepService(config, store, RecordingNotifier(), clock=lambda: SWEPT_AT).run()
    manifest_key = store.manifest_key(backup.backup_id)
    genuine_manifest = s3.get_object(Bucket=BUCKET, Key=manifest_key)
    genuine_artifact = stored_bytes(s3, backup)
    forged = replace_artifact(s3, store, backup, b"forged")

    # when the backup is repaired
    report = RepairService(store).repair("orders", backup.backup_id)

    # then the manifest key serves the committed manifest again, and the artifact key its pinned version
    assert read_current(s3, manifest_key) == (genuine_manifest["Body"].read(), genuine_manifest["VersionId"])
    assert read_current(s3, backup.object.key) == (genuine_artifact, backup.object.version_id)
    assert store.get_manifest(backup.backup_id) == backup
    # and the forged artifact is in quarantine with the forged manifest
    assert forged.object.version_id is not None
    assert quarantine_key(backup.object.key, forged.object.version_id) in report.quarantined
    assert len(report.quarantined) == 2


def test_a_governance_locked_intruder_is_removed_and_a_compliance_locked_one_is_refused(
    make_config: Callable[..., Config], s3: Any, tmp_path: Path
) -> None:
    # given a backup in a bucket with Object Lock, and two stray writes locked in each mode
    s3.create_bucket(Bucket="backstop-locked", ObjectLockEnabledForBucket=True)
    store = S3Store(boto3.client("s3", region_name=REGION), bucket="backstop-locked", prefix="backups")
    db = {"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db", 50))}
    backup = run_backup(make_config(db, bucket="backstop-locked"), store, at(21)).manifest
    until = datetime(2030, 1, 1, tzinfo=UTC)
    compliance = s3.put_object(
        Bucket="backstop-locked",
        Key=backup.object.key,
        Body=b"locked for good",
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )["VersionId"]
    s3.put_object(
        Bucket="backstop-locked",
        Key=backup.object.key,
        Body=b"locked, governance",
        ObjectLockMode="GOVERNANCE",
        ObjectLockRetainUntilDate=until,
    )

    # when the backup is repaired
    with pytest.raises(StorageError) as caught:
        RepairService(store).repair("orders", backup.backup_id)

    # then the governance-locked version went (bypassed, as an administrator may), and the compliance-locked
    # one stays current, with a sentence saying nobody can remove it before its retention ends
    assert str(caught.value).startswith(
        f"Version {compliance} of {backup.object.key} is under a compliance-mode Object Lock until 2030-01-01"
    )
    current = s3.get_object(Bucket="backstop-locked", Key=backup.object.key)
    assert (current["Body"].read(), current["VersionId"]) == (b"locked for good", compliance)


@pytest.mark.parametrize(
    ("database", "backup_id", "error", "fragment"),
    [
        ("orders", "orders-20261120T020000Z", BackupNotFoundError, "has no manifest"),
        ("orders", "billing-20261121T020000Z", InvalidNameError, "does not belong to database 'orders'"),
        ("orders", "latest", InvalidNameError, "Invalid backup id"),
    ],
    ids=["never-taken", "another-database", "not-an-id"],
)
def test_repair_of_a_backup_that_is_not_there_says_so(
    store: S3Store,
    backup: Manifest,
    database: str,
    backup_id: str,
    error: type[Exception],
    fragment: str,
) -> None:
    with pytest.raises(error, match=fragment):
        RepairService(store).repair(database, backup_id)


def test_the_sweep_repairs_an_overwritten_key_when_configured_to_and_alerts_what_it_did(
    make_config: Callable[..., Config], store: S3Store, s3: Any, tmp_path: Path
) -> None:
    # given a sweep configured to repair, and a backup whose artifact key was overwritten
    db = {"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db", 300))}
    config = make_config(db, sweep={"repair": True})
    backup = run_backup(config, store, at(21)).manifest
    genuine = stored_bytes(s3, backup)
    intruder = s3.put_object(Bucket=BUCKET, Key=backup.object.key, Body=b"evil")["VersionId"]
    notifier = RecordingNotifier()

    # when the sweep runs
    report = SweepService(config, store, notifier, clock=lambda: SWEPT_AT).run()

    # then the key serves the genuine version again and the intruder is in quarantine
    assert read_current(s3, backup.object.key) == (genuine, backup.object.version_id)
    assert s3.get_object(Bucket=BUCKET, Key=quarantine_key(backup.object.key, intruder))["Body"].read() == b"evil"
    # and the alert says what was found and what the sweep did about it
    [(subject, alert)] = notifier.alerts
    assert subject == f"Backstop: backup {backup.backup_id} was overwritten and repaired"
    assert (alert["event"], alert["repaired"]) == ("backup_overwritten", True)
    assert quarantine_key(backup.object.key, intruder) in str(alert["repair"])
    assert report.overwritten == (backup.backup_id,)
    # and the record says what was found, and that the backup is good again (the pinned bytes were re-read)
    record = store.get_sidecar(backup.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["finding"], record["repaired"]) == (True, "overwritten", True)
    # and the next sweep finds nothing
    again = RecordingNotifier()
    assert SweepService(config, store, again, clock=lambda: SWEPT_AT).run().passed == (backup.backup_id,)
    assert again.alerts == []
