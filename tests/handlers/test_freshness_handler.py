"""The freshness function, driven with events/freshness/scheduled.json: alerts reach the topic, metrics are emitted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pydantic
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.events import FreshnessCheckEvent
from backstop.handlers.freshness import handler
from tests.conftest import BUCKET
from tests.handlers import EVENTS, AlertInbox, FakeContext, commit_backup, load_event, metric_values
from tests.replication import replicate

SAMPLE = "freshness/scheduled.json"
CHECKED_AT = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the sample's checked_at


@pytest.fixture
def inbox(s3: Any, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """The function's environment (bucket, prefix, alerts topic) and the operator's inbox on that topic."""
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_PREFIX", "backups")
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    return inbox


def check(event: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = handler(event or load_event(SAMPLE), FakeContext())  # type: ignore[arg-type]
    return result


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("freshness/*.json")), ids=lambda p: p.name)
def test_every_freshness_sample_validates_against_the_event_model(sample: Path) -> None:
    event = FreshnessCheckEvent.model_validate_json(sample.read_text())

    assert [db.name for db in event.databases] == ["orders", "uploads"]
    assert all(db.stale_after == timedelta(hours=26) for db in event.databases)


def test_fresh_databases_publish_nothing_and_report_their_age(
    store: S3Store, inbox: AlertInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given last night's backups of both databases, six hours before the check
    commit_backup(store, "orders", CHECKED_AT - timedelta(hours=6))
    commit_backup(store, "uploads", CHECKED_AT - timedelta(hours=5, minutes=30))

    # when the scheduled check runs
    result = check()

    # then the inbox stays empty, and the metrics give each age and no stale database
    assert inbox.envelopes() == []
    assert result["stale"] == []
    assert [entry["status"] for entry in result["databases"]] == ["fresh", "fresh"]
    out = capsys.readouterr().out
    assert metric_values(out, "NewestBackupAgeSeconds") == [
        ({"service": "freshness", "database": "orders"}, 6 * 3600.0),
        ({"service": "freshness", "database": "uploads"}, 5.5 * 3600.0),
    ]
    assert metric_values(out, "StaleDatabases") == [({"service": "freshness"}, 0.0)]


def test_a_database_whose_newest_backup_is_older_than_stale_after_is_alerted(
    store: S3Store, inbox: AlertInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given orders last backed up 27 hours before the check (stale_after 26h), uploads 6 hours before
    commit_backup(store, "orders", CHECKED_AT - timedelta(days=3))
    stale_id = commit_backup(store, "orders", CHECKED_AT - timedelta(hours=27))
    commit_backup(store, "uploads", CHECKED_AT - timedelta(hours=6))

    # when the scheduled check runs
    result = check()

    # then exactly one alert arrives, for orders, saying how old its newest backup is
    [envelope] = inbox.envelopes()
    assert envelope["Subject"] == "Backstop: backups of orders are stale"
    assert result["stale"] == ["orders"]
    alert = AlertInbox.message(envelope)
    assert alert == {
        "event": "backup_stale",
        "database": "orders",
        "status": "stale",
        "newest_backup": stale_id,
        "age_seconds": 27 * 3600,
        "stale_after_seconds": 26 * 3600,
    }
    out = capsys.readouterr().out
    assert ({"service": "freshness", "database": "orders"}, 27 * 3600.0) in metric_values(out, "NewestBackupAgeSeconds")
    assert metric_values(out, "StaleDatabases") == [({"service": "freshness"}, 1.0)]


def test_a_database_without_any_backup_is_alerted_as_missing(
    store: S3Store, inbox: AlertInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given orders backed up, and uploads never (its schedule was disabled), with failed runs' leftovers only
    commit_backup(store, "orders", CHECKED_AT - timedelta(hours=6))
    store.client.put_object(Bucket=BUCKET, Key="backups/uploads/2026/11/21/uploads-20261121T023000Z.tar.gz", Body=b"x")

    # when the scheduled check runs
    result = check()

    # then uploads is alerted as missing, and has no age metric, while the stale count says one
    [alert] = inbox.alerts()
    assert (alert["event"], alert["database"], alert["status"]) == ("backup_stale", "uploads", "missing")
    assert alert["newest_backup"] is None
    assert result["stale"] == ["uploads"]
    out = capsys.readouterr().out
    assert [dims["database"] for dims, _ in metric_values(out, "NewestBackupAgeSeconds")] == ["orders"]
    assert metric_values(out, "StaleDatabases") == [({"service": "freshness"}, 1.0)]


def test_one_alert_per_database_when_nothing_was_ever_backed_up(store: S3Store, inbox: AlertInbox) -> None:
    # given an empty bucket (the schedules never ran)
    # when the scheduled check runs
    result = check()

    # then each database is alerted once
    assert sorted(alert["database"] for alert in inbox.alerts()) == ["orders", "uploads"]
    assert result["stale"] == ["orders", "uploads"]


def test_the_check_costs_the_same_requests_whatever_the_number_of_backups(
    store: S3Store, s3: Any, inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given orders with two backups and uploads with ninety days of them, across a month boundary
    commit_backup(store, "orders", CHECKED_AT - timedelta(days=1))
    commit_backup(store, "orders", CHECKED_AT - timedelta(hours=6))
    for day in range(90):
        commit_backup(store, "uploads", CHECKED_AT - timedelta(hours=6, days=day))
    monkeypatch.setattr("backstop.bootstrap.s3_client", lambda: s3)
    # Pages of 32 keys, so a listing proportional to the backups would show up as more requests.
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=32))
    listings: list[str] = []
    s3.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listings.append(params["Prefix"])
    )

    # when the scheduled check runs
    check()

    # then each database costs the same few listings (years, months, days, one day's keys, and, since neither
    # has passed a drill yet, the page that finds its first backup), not one per backup
    per_database = {
        db: sum(1 for prefix in listings if prefix.startswith(f"backups/{db}/")) for db in ("orders", "uploads")
    }
    assert per_database["orders"] == per_database["uploads"] <= 5
    assert len(listings) == sum(per_database.values())


def test_without_checked_at_the_check_runs_against_the_current_time(store: S3Store, inbox: AlertInbox) -> None:
    # given backups an hour old by the clock, and an event without checked_at
    now = datetime.now(UTC)
    commit_backup(store, "orders", now - timedelta(hours=1))
    commit_backup(store, "uploads", now - timedelta(hours=1))
    event = load_event(SAMPLE)
    del event["checked_at"]

    # when the check runs
    result = check(event)

    # then both are fresh
    assert result["stale"] == []
    assert inbox.envelopes() == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(skip_alerts=True),
        lambda e: e["databases"][0].update(stale_after="forever"),
        lambda e: e["databases"][0].update(name="../orders"),
        lambda e: e["databases"].append(dict(e["databases"][0])),
        lambda e: e.update(databases=[]),
        lambda e: e.update(checked_at="2026-11-22T08:00:00"),
    ],
    ids=["extra-key", "bad-duration", "bad-name", "listed-twice", "no-database", "naive-time"],
)
def test_a_malformed_event_is_rejected_before_any_aws_call(
    s3: Any, inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    event = load_event(SAMPLE)
    change(event)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    monkeypatch.setattr("backstop.bootstrap.s3_client", lambda: s3)

    with pytest.raises(pydantic.ValidationError):
        check(event)

    assert calls == []
    assert inbox.envelopes() == []


def test_with_a_replica_each_database_reports_what_the_replica_holds(
    store: S3Store, inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a replica in another region that holds orders' backup, and uploads' not yet
    replica = boto3.client("s3", region_name="eu-west-1")
    replica.create_bucket(Bucket="backstop-replica", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    replica.put_bucket_versioning(Bucket="backstop-replica", VersioningConfiguration={"Status": "Enabled"})
    monkeypatch.setenv("BACKSTOP_REPLICA", '{"bucket": "backstop-replica", "region": "eu-west-1", "allowed_lag": "1h"}')
    commit_backup(store, "orders", CHECKED_AT - timedelta(hours=6))
    replicate(BUCKET, "backstop-replica")
    commit_backup(store, "uploads", CHECKED_AT - timedelta(hours=5))

    # when the scheduled check runs
    result = check()

    # then the vault is fresh, uploads' replica is missing and alerted, and orders' replica age is a metric
    assert (result["stale"], result["replica_stale"]) == ([], ["uploads"])
    assert [(e["database"], e["replica_status"]) for e in result["databases"]] == [
        ("orders", "fresh"),
        ("uploads", "missing"),
    ]
    [alert] = inbox.alerts()
    assert (alert["event"], alert["database"]) == ("replica_stale", "uploads")
    out = capsys.readouterr().out
    assert metric_values(out, "ReplicaBackupAgeSeconds") == [
        ({"service": "freshness", "database": "orders"}, 6 * 3600.0)
    ]
    assert len(metric_values(out, "NewestBackupAgeSeconds")) == 2
