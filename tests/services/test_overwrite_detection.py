"""Overwritten keys: a new version (or a delete marker) over a committed backup's artifact or manifest key.

The pinned version is untouched, so every byte check of the pinned version passes; what is wrong is
what the key serves to anyone reading it without a version (manual recovery), and that lifecycle will
expire the genuine, now noncurrent, version. `verify` and the sweep compare the key's current version
with the pinned one and say so (docs/storage.md "Overwritten keys: detection and repair").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import IntegrityError
from backstop.manifest import Manifest
from backstop.services.sweep import SweepReport, SweepService
from backstop.services.verify import VerifyService
from tests.conftest import BUCKET, create_orders_db
from tests.services import RecordingNotifier, at, replace_artifact, run_backup, stored_bytes

SWEPT_AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@pytest.fixture
def config(make_config: Callable[..., Config], tmp_path: Path) -> Config:
    return make_config({"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "o.db", 300))})


@pytest.fixture
def backups(config: Config, store: S3Store) -> list[Manifest]:
    """Three committed backups of orders, oldest first (19, 20 and 21 November)."""
    return [run_backup(config, store, at(day)).manifest for day in (19, 20, 21)]


def sweep(config: Config, store: S3Store, notifier: RecordingNotifier) -> SweepReport:
    return SweepService(config, store, notifier, clock=lambda: SWEPT_AT).run()


def current_version(s3: Any, key: str) -> str:
    return str(s3.head_object(Bucket=BUCKET, Key=key)["VersionId"])


# -- verify ------------------------------------------------------------------------------------


def test_verify_fails_naming_both_versions_when_the_artifact_key_was_overwritten(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a stray write over the newest backup's artifact key: a new current version, the pinned one intact
    manifest = backups[2]
    intruder = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=b"evil")["VersionId"]

    # when the backup is verified
    with pytest.raises(IntegrityError) as caught:
        VerifyService(config, store).verify("orders", manifest.backup_id)

    # then it fails in one sentence naming the key, both versions and the command that repairs it
    assert str(caught.value) == (
        f"{manifest.backup_id}: the current version of {manifest.object.key} is {intruder}, not the backed-up "
        f"{manifest.object.version_id}: the key was overwritten; "
        f"run `backstop repair orders {manifest.backup_id}`."
    )


def test_verify_fails_when_a_delete_marker_hides_the_artifact(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a delete marker placed on the artifact's key (the pinned version is still stored, noncurrent)
    manifest = backups[2]
    marker = s3.delete_object(Bucket=BUCKET, Key=manifest.object.key)["VersionId"]

    # when the backup is verified
    with pytest.raises(IntegrityError) as caught:
        VerifyService(config, store).verify("orders", manifest.backup_id)

    # then the sentence names the delete marker and the pinned version
    message = str(caught.value)
    assert f"is the delete marker {marker}, not the backed-up {manifest.object.version_id}" in message
    assert message.endswith(f"the key was deleted; run `backstop repair orders {manifest.backup_id}`.")


def test_verify_passes_and_says_the_key_serves_the_backed_up_version(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given an untouched backup (the control for the faults above)
    manifest = backups[2]

    # when it is verified
    report = VerifyService(config, store).verify("orders", manifest.backup_id)

    # then the report says the key's current version is the pinned one
    assert dict(report.checks)["current version"] == f"{manifest.object.key} serves {manifest.object.version_id}"


def test_a_delete_marker_on_a_backup_old_enough_for_lifecycle_is_retention_not_an_overwrite(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a backup past its tier's expiry (the first of the year: yearly, 3 x 366 days) whose artifact
    # lifecycle expired (a delete marker) before its manifest: S3 expires the two objects separately
    manifest = backups[0]
    assert manifest.retention_tier == "yearly"
    s3.delete_object(Bucket=BUCKET, Key=manifest.object.key)
    later = manifest.started_at + timedelta(days=3 * 366)

    # when it is verified then, and a day before it was due
    report = VerifyService(config, store, clock=lambda: later).verify("orders", manifest.backup_id)
    with pytest.raises(IntegrityError, match="the key was deleted"):
        VerifyService(config, store, clock=lambda: later - timedelta(days=1)).verify("orders", manifest.backup_id)

    # then the due one passes: its pinned version is intact, and lifecycle is doing what it was told
    assert report.manifest.backup_id == manifest.backup_id


def test_verify_fails_when_the_manifest_key_was_overwritten_after_a_sweep_verified_it(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a sweep that verified the newest backup, then a consistent forgery: a new artifact version and
    # a resealed manifest pinning it, written over both keys (what a compromised writer could do)
    manifest = backups[2]
    sweep(config, store, RecordingNotifier())
    committed = current_version(s3, store.manifest_key(manifest.backup_id))
    forged = replace_artifact(s3, store, manifest, stored_bytes(s3, manifest))
    overwritten = current_version(s3, store.manifest_key(manifest.backup_id))
    assert forged.object.version_id != manifest.object.version_id

    # when the backup is verified
    with pytest.raises(IntegrityError) as caught:
        VerifyService(config, store).verify("orders", manifest.backup_id)

    # then the manifest's key is named with the version the sweep verified and the one it serves now
    message = str(caught.value)
    assert (
        f"the current version of {store.manifest_key(manifest.backup_id)} is {overwritten}, "
        f"not the committed {committed}" in message
    )
    assert f"run `backstop repair orders {manifest.backup_id}`" in message


# -- the sweep ---------------------------------------------------------------------------------


def test_the_sweep_alerts_an_overwritten_artifact_key_and_records_a_failed_verification(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given the middle backup's artifact key overwritten
    manifest = backups[1]
    intruder = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=b"evil")["VersionId"]
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then exactly that backup is alerted, naming the key and both versions
    [(subject, alert)] = notifier.alerts
    assert subject == f"Backstop: backup {manifest.backup_id} was overwritten"
    assert (alert["event"], alert["database"], alert["backup_id"]) == (
        "backup_overwritten",
        "orders",
        manifest.backup_id,
    )
    assert alert["keys"] == [
        {
            "key": manifest.object.key,
            "pinned_version": manifest.object.version_id,
            "current_version": intruder,
            "delete_marker": False,
        }
    ]
    assert f"run `backstop repair orders {manifest.backup_id}`" in str(alert["message"])
    assert alert["repaired"] is False
    # and it is reported as overwritten, not passed, while the others pass
    assert report.overwritten == (manifest.backup_id,)
    assert report.passed == (backups[0].backup_id, backups[2].backup_id)
    assert report.to_dict()["overwritten"] == [manifest.backup_id]
    # and recorded beside the backup as a failed verification
    record = store.get_sidecar(manifest.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["finding"]) == (False, "overwritten")
    assert intruder in record["reason"]


def test_the_sweep_alerts_a_delete_marker_on_an_artifact_key(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a delete marker on the oldest backup's artifact key
    manifest = backups[0]
    marker = s3.delete_object(Bucket=BUCKET, Key=manifest.object.key)["VersionId"]
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then it is alerted and reported as overwritten
    [(_, alert)] = notifier.alerts
    assert alert["event"] == "backup_overwritten"
    assert alert["keys"] == [
        {
            "key": manifest.object.key,
            "pinned_version": manifest.object.version_id,
            "current_version": marker,
            "delete_marker": True,
        }
    ]
    assert report.overwritten == (manifest.backup_id,)


def test_a_manifest_forged_after_a_sweep_is_alerted_on_every_later_sweep(
    config: Config, store: S3Store, s3: Any, backups: list[Manifest]
) -> None:
    # given a sweep that verified every backup, then the newest one's artifact and manifest replaced by a
    # consistent forgery (a new artifact version and a resealed manifest pinning it)
    manifest = backups[2]
    sweep(config, store, RecordingNotifier())
    manifest_key = store.manifest_key(manifest.backup_id)
    committed = current_version(s3, manifest_key)
    replace_artifact(s3, store, manifest, b"forged but self-consistent")
    overwritten = current_version(s3, manifest_key)

    # when the sweep runs twice more
    first, second = RecordingNotifier(), RecordingNotifier()
    sweep(config, store, first)
    report = sweep(config, store, second)

    # then both runs alert that the manifest's key no longer serves the version the sweep verified
    for notifier in (first, second):
        [(_, alert)] = notifier.alerts
        assert alert["event"] == "backup_overwritten"
        assert alert["keys"] == [
            {"key": manifest_key, "pinned_version": committed, "current_version": overwritten, "delete_marker": False}
        ]
    assert report.overwritten == (manifest.backup_id,)
