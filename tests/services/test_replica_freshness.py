"""Freshness covers the replica: what the replica holds of each database, against stale_after + allowed lag.

The replica is a real bucket in another region (moto), filled by tests.replication.replicate as S3
replication would fill it (same keys, same version ids); a backup not yet replicated is what a
broken or lagging replication leaves.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.services.freshness import FreshnessRule, FreshnessService, ReplicaCheck
from tests.conftest import BUCKET
from tests.handlers import commit_backup
from tests.replication import replicate
from tests.services import RecordingNotifier

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
REPLICA = "backstop-test-replica"
REPLICA_REGION = "eu-west-1"
RULES = [FreshnessRule("orders", timedelta(hours=26)), FreshnessRule("uploads", timedelta(hours=26))]
LAG = timedelta(hours=6)


@pytest.fixture
def replica(s3: Any) -> S3Store:
    client = boto3.client("s3", region_name=REPLICA_REGION)
    client.create_bucket(Bucket=REPLICA, CreateBucketConfiguration={"LocationConstraint": REPLICA_REGION})
    client.put_bucket_versioning(Bucket=REPLICA, VersioningConfiguration={"Status": "Enabled"})
    return S3Store(client, bucket=REPLICA, prefix="backups", replica_of=BUCKET)


def check(store: S3Store, replica: S3Store, notifier: RecordingNotifier) -> dict[str, Any]:
    service = FreshnessService(store, clock=lambda: NOW, notifier=notifier, replica=ReplicaCheck(replica, LAG))
    return {entry.database: entry for entry in service.check(RULES)}


def test_a_replica_holding_the_newest_backups_is_fresh_and_alerts_nothing(store: S3Store, replica: S3Store) -> None:
    orders = commit_backup(store, "orders", NOW - timedelta(hours=6))
    commit_backup(store, "uploads", NOW - timedelta(hours=5))
    assert replicate(BUCKET, REPLICA) == 4  # two artifacts, two manifests
    notifier = RecordingNotifier()

    report = check(store, replica, notifier)

    assert notifier.alerts == []
    replicated = report["orders"].replica
    assert replicated is not None
    assert (replicated.status, replicated.newest_backup, replicated.age) == ("fresh", orders, timedelta(hours=6))
    assert replicated.stale_after == timedelta(hours=26) + LAG


def test_a_replica_trailing_past_stale_after_and_the_lag_is_alerted_while_the_vault_is_fresh(
    store: S3Store, replica: S3Store
) -> None:
    # given replication that stopped after the backups of two days ago: the vault has had newer ones since
    old = commit_backup(store, "orders", NOW - timedelta(hours=48))
    commit_backup(store, "uploads", NOW - timedelta(hours=48))
    replicate(BUCKET, REPLICA)
    newest = commit_backup(store, "orders", NOW - timedelta(hours=2))
    commit_backup(store, "uploads", NOW - timedelta(hours=2))
    notifier = RecordingNotifier()

    report = check(store, replica, notifier)

    # then the vault is fresh, the replica is stale for both, and each is alerted once, naming what it holds
    assert [report[db].status for db in ("orders", "uploads")] == ["fresh", "fresh"]
    assert [(subject, alert["event"], alert["status"]) for subject, alert in notifier.alerts] == [
        ("Backstop: the replica of orders is stale", "replica_stale", "stale"),
        ("Backstop: the replica of uploads is stale", "replica_stale", "stale"),
    ]
    alert = notifier.alerts[0][1]
    assert (alert["newest_replicated_backup"], alert["newest_backup"]) == (old, newest)
    assert (alert["age_seconds"], alert["stale_after_seconds"]) == (48 * 3600, 32 * 3600)
    assert "replication rule" in str(alert["message"])


def test_a_replica_within_its_allowed_lag_is_not_alerted(store: S3Store, replica: S3Store) -> None:
    # given a replica 30 hours behind: past stale_after (26h) but within stale_after + lag (32h)
    commit_backup(store, "orders", NOW - timedelta(hours=30))
    commit_backup(store, "uploads", NOW - timedelta(hours=30))
    replicate(BUCKET, REPLICA)
    commit_backup(store, "orders", NOW - timedelta(hours=1))
    commit_backup(store, "uploads", NOW - timedelta(hours=1))
    notifier = RecordingNotifier()

    report = check(store, replica, notifier)

    assert notifier.alerts == []
    assert report["orders"].replica is not None and report["orders"].replica.status == "fresh"


def test_an_empty_replica_is_alerted_as_missing(store: S3Store, replica: S3Store) -> None:
    commit_backup(store, "orders", NOW - timedelta(hours=1))
    commit_backup(store, "uploads", NOW - timedelta(hours=1))
    notifier = RecordingNotifier()

    report = check(store, replica, notifier)

    assert [report[db].replica.status for db in ("orders", "uploads") if report[db].replica] == ["missing", "missing"]
    assert [alert["newest_replicated_backup"] for _, alert in notifier.alerts] == [None, None]
    assert "has no backup of this database" in str(notifier.alerts[0][1]["message"])


def test_a_replica_that_cannot_be_read_is_alerted_as_unknown_and_the_vault_is_still_checked(
    store: S3Store, s3: Any
) -> None:
    # given a replica bucket the check cannot reach (here: it does not exist)
    commit_backup(store, "orders", NOW - timedelta(hours=1))
    commit_backup(store, "uploads", NOW - timedelta(hours=40))
    missing = S3Store(boto3.client("s3", region_name=REPLICA_REGION), bucket="nowhere", prefix="backups")
    notifier = RecordingNotifier()

    report = check(store, missing, notifier)

    assert [(report[db].status, report[db].replica.status if report[db].replica else None) for db in report] == [
        ("fresh", "unknown"),
        ("stale", "unknown"),
    ]
    assert [alert["event"] for _, alert in notifier.alerts] == ["replica_stale", "backup_stale", "replica_stale"]
    assert "nowhere" in str(notifier.alerts[0][1]["message"])
