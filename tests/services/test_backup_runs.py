"""The backup service under the faults of RELIABILITY.md "Backup time": corrupt and locked sources,
repeated deliveries, overlapping runs and leftovers of killed runs. Real SQLite files, S3 on moto."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from backstop.bootstrap import build_notifier
from backstop.errors import (
    BackupAlreadyRunningError,
    IntegrityError,
    SourceError,
    SourceLockedError,
    StorageError,
    WorkDirError,
)
from backstop.services.artifacts import resolve_backup
from backstop.services.backup import RUN_DIR_PREFIX, run_dir_prefix
from backstop.services.verify import VerifyService
from tests.conftest import BUCKET, REGION, create_orders_db
from tests.services import (
    RecordingNotifier,
    at,
    corrupt_table,
    failure_records,
    keys_under,
    leftovers,
    lock_is_held,
    open_uploads,
    run_backup,
    versions_of,
)


def sqlite_db(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "orders", "engine": "sqlite", "path": str(path), **extra}


def assert_nothing_committed(s3: Any, store: Any, backup_id: str) -> None:
    """The common outcome of every failed run: no manifest, no object, no open upload, no lock."""
    assert not store.manifest_exists(backup_id)
    assert keys_under(s3, store.manifest_key(backup_id)) == []
    assert versions_of(s3, store.object_key(backup_id, "sqlite.zst")) == []
    assert open_uploads(s3) == []
    assert not lock_is_held(s3)


# -- corrupt source --------------------------------------------------------------------------------


def test_corrupt_source_is_refused_and_the_older_good_backup_stays_latest(
    make_config: Any, store: Any, s3: Any, orders_db: Path, work_dir: Path
) -> None:
    # given a good backup from yesterday, then a table page of the source overwritten
    config = make_config(sqlite_db(orders_db))
    good = run_backup(config, store, at(20)).manifest
    corrupt_table(orders_db)
    notifier = RecordingNotifier()

    # when tonight's run backs it up
    with pytest.raises(IntegrityError) as caught:
        run_backup(config, store, at(21), notifier=notifier)

    # then the corruption is named, nothing of tonight is visible, and yesterday's backup is still latest
    assert "fails integrity_check" in str(caught.value)
    assert "nothing was committed" in str(caught.value)
    assert_nothing_committed(s3, store, "orders-20261121T020000Z")
    assert store.newest_backup_id("orders") == good.backup_id
    assert resolve_backup(store, "orders", "latest").backup_id == good.backup_id
    assert VerifyService(config, store).verify("orders", "latest").manifest.backup_id == good.backup_id
    assert leftovers(work_dir) == []
    [record] = failure_records(s3)
    assert (record["backup_id"], record["error"]) == ("orders-20261121T020000Z", "IntegrityError")
    [(subject, alert)] = notifier.alerts
    assert "orders" in subject
    assert alert["backup_id"] == "orders-20261121T020000Z"
    assert alert["error"] == "IntegrityError"


def test_quick_check_also_detects_a_corrupt_source(make_config: Any, store: Any, s3: Any, orders_db: Path) -> None:
    # given a source configured for the cheaper quick_check, with a corrupt table page
    config = make_config(sqlite_db(orders_db, integrity_check="quick"))
    corrupt_table(orders_db)

    # when it is backed up
    with pytest.raises(IntegrityError, match="fails quick_check"):
        run_backup(config, store, at(21))

    # then nothing was committed
    assert_nothing_committed(s3, store, "orders-20261121T020000Z")


# -- locked source ---------------------------------------------------------------------------------


@pytest.fixture
def exclusive_writer(tmp_path: Path) -> Iterator[tuple[Path, sqlite3.Connection]]:
    """A rollback-journal database held by another connection inside BEGIN EXCLUSIVE (no reader may enter)."""
    path = create_orders_db(tmp_path / "locked.db", rows=200, wal=False)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    conn.execute("UPDATE orders SET note = 'being rewritten' WHERE id = 1")
    try:
        yield path, conn
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_source_locked_past_the_busy_timeout_fails_clearly_after_bounded_retries(
    make_config: Any, store: Any, s3: Any, work_dir: Path, exclusive_writer: tuple[Path, sqlite3.Connection]
) -> None:
    # given a source another writer keeps locked, and a 1 s busy timeout with 2 attempts
    path, writer = exclusive_writer
    config = make_config(sqlite_db(path, busy_timeout="1s", lock_retries=2))
    notifier = RecordingNotifier()

    # when a backup runs
    with pytest.raises(SourceLockedError) as caught:
        run_backup(config, store, at(21), notifier=notifier)

    # then the error says what happened and what to do, and the run left nothing but its failure record
    message = str(caught.value)
    assert "orders" in message
    assert "stayed locked by another writer" in message
    assert "2 attempts of 1s" in message
    assert "busy_timeout" in message
    assert_nothing_committed(s3, store, "orders-20261121T020000Z")
    assert leftovers(work_dir) == []
    [record] = failure_records(s3)
    assert (record["backup_id"], record["error"]) == ("orders-20261121T020000Z", "SourceLockedError")
    assert [alert["error"] for _, alert in notifier.alerts] == ["SourceLockedError"]

    # and once the writer lets go, the same run succeeds (the lock, not the file, was the cause)
    writer.execute("ROLLBACK")
    outcome = run_backup(config, store, at(21))
    assert outcome.created
    assert outcome.manifest.tables["orders"].rows == 200


# -- repeated and overlapping runs -----------------------------------------------------------------


def test_the_same_scheduled_run_delivered_twice_makes_one_backup(
    make_config: Any, store: Any, s3: Any, orders_db: Path
) -> None:
    # given a scheduled run that was delivered and committed
    config = make_config(sqlite_db(orders_db))
    first = run_backup(config, store, at(21))
    object_key = first.manifest.object.key

    # when the same schedule is delivered again (after the source changed)
    with closing(sqlite3.connect(orders_db)) as conn:
        conn.execute("DELETE FROM orders WHERE id <= 10")
        conn.commit()
    second = run_backup(config, store, at(21))

    # then the second delivery returns the existing backup and writes nothing
    assert first.created
    assert not second.created
    assert second.manifest.backup_id == first.manifest.backup_id == "orders-20261121T020000Z"
    assert second.manifest == first.manifest
    assert second.manifest.tables["orders"].rows == 1000
    assert versions_of(s3, object_key) == [first.manifest.object.version_id]
    assert len(versions_of(s3, store.manifest_key("orders-20261121T020000Z"))) == 1


def test_a_delivery_that_loses_the_commit_race_removes_its_own_upload(
    make_config: Any, store: Any, s3: Any, orders_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a committed run, and a second delivery that did not see its manifest when it started
    config = make_config(sqlite_db(orders_db))
    first = run_backup(config, store, at(21)).manifest
    monkeypatch.setattr(store, "manifest_exists", lambda _backup_id: False)

    # when the second delivery uploads and tries to commit
    second = run_backup(config, store, at(21))

    # then the first commit wins and the loser's object version is gone, never overwriting the winner
    assert not second.created
    assert second.manifest == first
    assert versions_of(s3, first.object.key) == [first.object.version_id]
    assert open_uploads(s3) == []


def test_an_overlapping_run_is_skipped_and_says_so(
    make_config: Any, store: Any, s3: Any, orders_db: Path, work_dir: Path
) -> None:
    # given another run of the same database holding its run lock
    config = make_config(sqlite_db(orders_db))
    now = datetime.now(UTC)
    other = store.acquire_run_lock("orders", "nightly-host:4242:abcd", now, timedelta(hours=1))

    # when a second run starts
    with pytest.raises(BackupAlreadyRunningError) as caught:
        run_backup(config, store, at(21))

    # then it is skipped, names the run that holds the lock, writes nothing and leaves that lock alone
    message = str(caught.value)
    assert "A backup of orders is already running" in message
    assert "nightly-host:4242:abcd" in message
    assert "skipped" in message
    assert not store.manifest_exists("orders-20261121T020000Z")
    assert open_uploads(s3) == []
    assert lock_is_held(s3)
    held = json.loads(s3.get_object(Bucket=BUCKET, Key="backups/_locks/orders.backup.json")["Body"].read())
    assert held["owner"] == "nightly-host:4242:abcd"
    assert leftovers(work_dir) == []

    # and once that run finishes, the next run goes ahead
    store.release_run_lock(other)
    assert run_backup(config, store, at(21)).created


def test_a_lock_left_by_a_killed_run_is_taken_over_after_it_expires(
    make_config: Any, store: Any, s3: Any, orders_db: Path
) -> None:
    # given a lock whose owner died long ago (expired)
    config = make_config(sqlite_db(orders_db))
    store.acquire_run_lock("orders", "dead-host:1:0000", datetime(2026, 1, 1, tzinfo=UTC), timedelta(hours=12))

    # when a run starts
    outcome = run_backup(config, store, at(21))

    # then it takes the lock over, commits, and releases it
    assert outcome.created
    assert not lock_is_held(s3)


# -- leftovers of killed runs ----------------------------------------------------------------------


def test_a_failed_run_leaves_no_temp_files_and_the_next_run_cleans_a_killed_runs_directory(
    make_config: Any, store: Any, orders_db: Path, work_dir: Path
) -> None:
    # given the run directory a killed run of this database left behind (a half-written snapshot)
    config = make_config(sqlite_db(orders_db))
    stale = work_dir / f"{run_dir_prefix('orders', f'{config.bucket}/{config.prefix}')}k1ll3d"
    stale.mkdir()
    (stale / "snapshot.sqlite").write_bytes(b"SQLite format 3\x00" + b"\x00" * 4096)
    corrupt_table(orders_db)

    # when the next run fails on a corrupt source
    with pytest.raises(IntegrityError):
        run_backup(config, store, at(21))

    # then the leftover and the failed run's own directory are both gone
    assert leftovers(work_dir) == []

    # and a run after that (source repaired) starts from a clean work dir and leaves it clean
    orders_db.unlink()
    create_orders_db(orders_db)
    stale.mkdir()
    assert run_backup(config, store, at(22)).created
    assert leftovers(work_dir) == []


def test_a_run_never_removes_the_run_directory_of_another_database(
    make_config: Any, store: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given two databases whose names share a prefix, and a run of 'orders-eu' in progress in the same work dir
    orders = create_orders_db(tmp_path / "orders.db", rows=50)
    orders_eu = create_orders_db(tmp_path / "orders-eu.db", rows=50)
    config = make_config(sqlite_db(orders), {"name": "orders-eu", "engine": "sqlite", "path": str(orders_eu)})
    live = work_dir / f"{RUN_DIR_PREFIX}orders-eu-a1b2c3"
    live.mkdir()
    (live / "snapshot.sqlite").write_bytes(b"snapshot being streamed")

    # when a backup of 'orders' runs
    assert run_backup(config, store, at(21)).created

    # then the other database's run directory is untouched
    assert (live / "snapshot.sqlite").read_bytes() == b"snapshot being streamed"


def test_a_run_never_removes_a_live_run_of_the_same_database_for_another_bucket(
    make_config: Any, store: Any, orders_db: Path, work_dir: Path
) -> None:
    # given a run of 'orders' for another bucket in progress in the same work dir (another config, another lock)
    config = make_config(sqlite_db(orders_db))
    live = work_dir / f"{run_dir_prefix('orders', 'other-bucket/backups')}l1ve"
    live.mkdir()
    (live / "snapshot.sqlite").write_bytes(b"snapshot being streamed")

    # when a backup of 'orders' runs for this config
    assert run_backup(config, store, at(21)).created

    # then the other run's directory is untouched
    assert (live / "snapshot.sqlite").read_bytes() == b"snapshot being streamed"


def test_a_run_never_removes_the_live_run_of_the_same_bucket_name_in_another_store(
    make_config: Any, store: Any, orders_db: Path, work_dir: Path
) -> None:
    # given a live process on this machine running 'orders' against another store with the same bucket
    # name (an emulator beside the account: another lock), and a killed run's directory with no owner
    config = make_config(sqlite_db(orders_db))
    prefix = run_dir_prefix("orders", f"{config.bucket}/{config.prefix}")
    live = work_dir / f"{prefix}l1ve"
    live.mkdir()
    (live / "snapshot.sqlite").write_bytes(b"snapshot being streamed")
    (live / ".owner").write_text(f"{socket.gethostname()} {os.getpid()}")
    dead = work_dir / f"{prefix}d3ad"
    dead.mkdir()
    (dead / ".owner").write_text(f"{socket.gethostname()} {_a_dead_pid()}")

    # when a backup of 'orders' runs
    assert run_backup(config, store, at(21)).created

    # then the live run's directory is untouched and the dead one's is gone
    assert (live / "snapshot.sqlite").read_bytes() == b"snapshot being streamed"
    assert not dead.exists()


def _a_dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- alerts ----------------------------------------------------------------------------------------


@pytest.fixture
def alert_queue(s3: Any) -> tuple[str, Any, str]:
    """An SNS topic with an SQS queue subscribed to it (moto), as an operator's alert inbox."""
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name="backstop-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="backstop-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
    return topic_arn, sqs, queue_url


def received_alerts(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


SENTINEL_SECRET = "sentinel-Zx9-do-not-leak"


def test_a_failed_backup_publishes_an_alert_with_database_backup_id_and_error_and_no_secret(
    make_config: Any,
    store: Any,
    s3: Any,
    tmp_path: Path,
    alert_queue: tuple[str, Any, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given alerts configured on an SNS topic, a sentinel credential, and a corrupt source holding a sentinel row
    topic_arn, sqs, queue_url = alert_queue
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SENTINEL_SECRET)
    path = create_orders_db(tmp_path / "orders.db")
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("UPDATE customers SET email = ? WHERE id = 1", (f"{SENTINEL_SECRET}@example.com",))
        conn.commit()
    corrupt_table(path)
    config = make_config(sqlite_db(path), alerts_topic_arn=topic_arn)

    # when the backup fails
    with pytest.raises(IntegrityError):
        run_backup(config, store, at(21), notifier=build_notifier(config))

    # then exactly one alert arrives naming the database, the backup and the error, and no secret
    [envelope] = received_alerts(sqs, queue_url)
    alert = json.loads(envelope["Message"])
    assert envelope["Subject"] == "Backstop: backup of orders failed"
    assert alert["event"] == "backup_failed"
    assert alert["database"] == "orders"
    assert alert["backup_id"] == "orders-20261121T020000Z"
    assert alert["error"] == "IntegrityError"
    assert "integrity_check" in alert["message"]
    assert SENTINEL_SECRET not in json.dumps(envelope)
    assert SENTINEL_SECRET not in json.dumps(failure_records(s3))


@pytest.fixture
def corrupt_source_config(make_config: Any, tmp_path: Path) -> Any:
    """A configuration whose orders source fails integrity_check at every run."""
    path = create_orders_db(tmp_path / "orders.db")
    corrupt_table(path)
    return make_config(sqlite_db(path))


def test_lambdas_retries_of_a_failing_scheduled_run_alert_once_and_count_the_attempts(
    corrupt_source_config: Any, store: Any, s3: Any
) -> None:
    # given a corrupt source, and Lambda's two retries of the same scheduled invocation
    config = corrupt_source_config
    notifier = RecordingNotifier()

    # when the run and both retries fail
    for _attempt in range(3):
        with pytest.raises(IntegrityError):
            run_backup(config, store, at(21), notifier=notifier)

    # then the operator is alerted once (the failure-alert function reports the retries giving up),
    # and the one failure record counts the attempts
    assert [message["backup_id"] for _subject, message in notifier.alerts] == ["orders-20261121T020000Z"]
    [record] = failure_records(s3)
    assert record["attempts"] == 3
    assert record["first_at"] <= record["at"]
    assert not lock_is_held(s3)


def test_the_next_scheduled_run_failing_alerts_again(corrupt_source_config: Any, store: Any) -> None:
    config = corrupt_source_config
    notifier = RecordingNotifier()

    for day in (21, 22):
        with pytest.raises(IntegrityError):
            run_backup(config, store, at(day), notifier=notifier)

    assert [message["backup_id"] for _subject, message in notifier.alerts] == [
        "orders-20261121T020000Z",
        "orders-20261122T020000Z",
    ]


def test_an_unreadable_earlier_failure_record_still_alerts(corrupt_source_config: Any, store: Any, s3: Any) -> None:
    # given a failure record for tonight's run that is not JSON (a doubt must end in an alert)
    config = corrupt_source_config
    s3.put_object(Bucket=BUCKET, Key="backups/_failures/orders/orders-20261121T020000Z.json", Body=b"{not json")
    notifier = RecordingNotifier()

    with pytest.raises(IntegrityError):
        run_backup(config, store, at(21), notifier=notifier)

    assert len(notifier.alerts) == 1
    assert failure_records(s3)[0]["attempts"] == 1


def test_a_successful_backup_publishes_no_alert(
    make_config: Any, store: Any, orders_db: Path, alert_queue: tuple[str, Any, str]
) -> None:
    # given alerts configured on an SNS topic
    topic_arn, sqs, queue_url = alert_queue
    config = make_config(sqlite_db(orders_db), alerts_topic_arn=topic_arn)

    # when a backup succeeds
    outcome = run_backup(config, store, at(21), notifier=build_notifier(config))

    # then the inbox stays empty (alerts mean something)
    assert outcome.created
    assert received_alerts(sqs, queue_url) == []


def test_freshness_alerts_when_a_database_has_no_backup_at_all(
    make_config: Any, store: Any, orders_db: Path, tmp_path: Path, alert_queue: tuple[str, Any, str]
) -> None:
    from backstop.services.catalog import CatalogService

    # given two databases, one backed up an hour ago and one never (its schedule was disabled)
    topic_arn, sqs, queue_url = alert_queue
    other = create_orders_db(tmp_path / "ledger.db", rows=10)
    config = make_config(
        sqlite_db(orders_db), {"name": "ledger", "engine": "sqlite", "path": str(other)}, alerts_topic_arn=topic_arn
    )
    now = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    run_backup(config, store, now - timedelta(hours=1))

    # when the freshness check runs
    report = CatalogService(config, store, clock=lambda: now, notifier=build_notifier(config)).freshness()

    # then only the database without a backup is reported and alerted as missing
    assert {f.database: f.status for f in report} == {"orders": "fresh", "ledger": "missing"}
    [envelope] = received_alerts(sqs, queue_url)
    alert = json.loads(envelope["Message"])
    assert (alert["event"], alert["database"], alert["status"]) == ("backup_stale", "ledger", "missing")


def test_freshness_reports_stale_when_the_newest_backup_is_older_than_stale_after(
    make_config: Any, store: Any, orders_db: Path
) -> None:
    from backstop.services.catalog import CatalogService

    # given a backup 27 hours old and stale_after 26h
    config = make_config(sqlite_db(orders_db, stale_after="26h"))
    now = datetime(2026, 11, 22, 5, 0, tzinfo=UTC)
    run_backup(config, store, now - timedelta(hours=27))
    notifier = RecordingNotifier()

    # when the freshness check runs
    [entry] = CatalogService(config, store, clock=lambda: now, notifier=notifier).freshness()

    # then it is stale, and the alert says by how much
    assert entry.status == "stale"
    assert entry.newest_backup == "orders-20261121T020000Z"
    [(_, alert)] = notifier.alerts
    assert alert["age_seconds"] == 27 * 3600
    assert alert["stale_after_seconds"] == 26 * 3600


def test_an_unusable_work_dir_is_a_recorded_and_alerted_failure(
    make_config: Any, store: Any, s3: Any, orders_db: Path, tmp_path: Path
) -> None:
    # given a configured work_dir that does not exist (a volume that was not mounted)
    config = make_config(sqlite_db(orders_db), work_dir=str(tmp_path / "not-mounted"))
    notifier = RecordingNotifier()

    # when a backup runs
    with pytest.raises(WorkDirError) as caught:
        run_backup(config, store, at(21), notifier=notifier)

    # then the sentence names the directory and what to do, and like any failed run it is recorded
    # and alerted, and the lock is released
    assert f"The work directory {tmp_path / 'not-mounted'} cannot hold a run (No such file or directory)" in str(
        caught.value
    )
    assert "set work_dir to a writable directory" in str(caught.value)
    assert len(failure_records(s3)) == 1
    assert len(notifier.alerts) == 1
    assert not lock_is_held(s3)


# -- lock release ----------------------------------------------------------------------------------


def _release_fails(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(_lock: Any) -> None:
        raise StorageError("Releasing the lock failed: S3 could not be reached.")

    monkeypatch.setattr(store, "release_run_lock", unreachable)


def test_a_lock_that_cannot_be_released_does_not_fail_a_good_backup(
    make_config: Any, store: Any, orders_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given S3 refusing the lock release at the very end of the run
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    _release_fails(store, monkeypatch)

    # when a backup runs, then it is committed (the lock expires by itself)
    outcome = run_backup(config, store, at(21))
    assert outcome.created
    assert store.manifest_exists(outcome.manifest.backup_id)


def test_a_lock_that_cannot_be_released_does_not_hide_why_the_backup_failed(
    make_config: Any, store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a missing source, and S3 refusing the lock release afterwards
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(tmp_path / "gone.db")})
    _release_fails(store, monkeypatch)

    # when the backup runs, then the error is the source's, not the lock's
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(config, store, at(21))
