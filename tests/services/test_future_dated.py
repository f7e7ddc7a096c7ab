"""Backups dated in the future: never taken, never `latest`, and alerted by freshness as clock skew.

A wrong date (a mistyped `--at`, a schedule or a machine with a wrong clock) would otherwise make a
backup the newest one for decades: every `latest` restore and drill would pick it, and the freshness
check would call the database fresh with a negative age while real backups go stale unnoticed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import BackstopError
from backstop.manifest import Trigger
from backstop.services.artifacts import backup_id_of, resolve_backup
from backstop.services.backup import BackupRequest, BackupService
from backstop.services.drill import DrillService
from backstop.services.freshness import FreshnessRule, FreshnessService
from tests.conftest import create_orders_db
from tests.handlers import commit_backup
from tests.services import RecordingNotifier, at, failure_records, keys_under, lock_is_held, run_backup

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
FAR_AHEAD = datetime(2099, 1, 1, tzinfo=UTC)
RULE = FreshnessRule("orders", timedelta(hours=26))


@pytest.fixture
def config(make_config: Any, tmp_path: Path) -> Config:
    config: Config = make_config(
        {"name": "orders", "engine": "sqlite", "path": str(create_orders_db(tmp_path / "orders.db", rows=50))}
    )
    return config


def request_at(when: datetime) -> BackupRequest:
    return BackupRequest("orders", when, "manual", Trigger(kind="user", by="alice"))


# -- taking a backup --------------------------------------------------------------------------------


@pytest.mark.parametrize("ahead", [timedelta(minutes=5, seconds=1), timedelta(days=1), FAR_AHEAD - NOW])
def test_a_backup_dated_more_than_five_minutes_ahead_is_refused_and_nothing_is_written(
    config: Config, store: S3Store, s3: Any, ahead: timedelta
) -> None:
    # given the service's clock at NOW
    notifier = RecordingNotifier()
    service = BackupService(config, store, clock=lambda: NOW, notifier=notifier)

    # when a backup is requested for a time more than five minutes after it
    with pytest.raises(BackstopError) as raised:
        service.run(request_at(NOW + ahead))

    # then it is refused in one sentence naming the time, and the bucket holds nothing at all
    message = str(raised.value)
    assert "future" in message and "\n" not in message and message.endswith("."), message
    assert keys_under(s3, "backups/") == []
    assert not lock_is_held(s3) and failure_records(s3) == []


def test_a_backup_dated_within_five_minutes_ahead_is_taken(config: Config, store: S3Store) -> None:
    # given a caller whose clock runs four minutes ahead of the service's
    service = BackupService(config, store, clock=lambda: NOW)

    # when it asks for a backup at its own "now"
    outcome = service.run(request_at(NOW + timedelta(minutes=4)))

    # then the backup is taken: small skews between machines are normal
    assert outcome.created and outcome.manifest.backup_id == "orders-20261122T080400Z"


# -- latest -----------------------------------------------------------------------------------------


def test_latest_never_picks_a_backup_dated_in_the_future(store: S3Store) -> None:
    # given last night's backup, and a manifest written directly to the bucket dated in 2099
    good = commit_backup(store, "orders", NOW - timedelta(hours=6))
    commit_backup(store, "orders", FAR_AHEAD)

    # when `latest` is resolved, at a given time and at the current time
    # then it is last night's backup both times
    assert backup_id_of(store, "orders", "latest", now=NOW) == good
    assert resolve_backup(store, "orders", "latest").backup_id == good


def test_latest_with_only_future_dated_backups_finds_none(store: S3Store) -> None:
    # given a database whose only backup is dated in 2099
    commit_backup(store, "orders", FAR_AHEAD)

    # when `latest` is resolved
    with pytest.raises(BackstopError) as raised:
        resolve_backup(store, "orders", "latest", now=NOW)

    # then there is none, said in one sentence
    assert "no committed backup" in str(raised.value)


def test_a_backup_named_by_its_id_is_found_whatever_its_date(store: S3Store) -> None:
    # given a future-dated backup someone wants to inspect by its id
    future = commit_backup(store, "orders", FAR_AHEAD)

    # when it is named explicitly
    # then it is what is resolved: only `latest` skips it
    assert resolve_backup(store, "orders", future, now=NOW).backup_id == future


def test_a_drill_picks_the_newest_backup_not_dated_in_the_future(
    make_config: Any, store: S3Store, tmp_path: Path
) -> None:
    # given a real backup of orders, and a future-dated manifest beside it whose object is junk
    source = create_orders_db(tmp_path / "orders.db", rows=80)
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(source)})
    real = run_backup(config, store, at(21)).manifest
    commit_backup(store, "orders", FAR_AHEAD)

    # when the drill runs with its default pick (the newest)
    result = DrillService(config, store, RecordingNotifier(), clock=lambda: NOW).run("orders")

    # then it drilled the real backup, and passed
    assert result.backup_id == real.backup_id
    assert result.passed, result.detail


# -- freshness --------------------------------------------------------------------------------------


def test_freshness_alerts_a_future_dated_newest_backup_as_clock_skew(store: S3Store) -> None:
    # given last night's backup, and a newer one dated two days after the check
    good = commit_backup(store, "orders", NOW - timedelta(hours=6))
    future = commit_backup(store, "orders", NOW + timedelta(days=2))
    notifier = RecordingNotifier()

    # when the freshness check runs
    [entry] = FreshnessService(store, clock=lambda: NOW, notifier=notifier).check([RULE])

    # then the database is not reported fresh, its age is never negative, and one alert names the
    # future-dated backup and how far ahead it is
    assert entry.status != "fresh" and entry.is_stale
    assert entry.age is not None and entry.age >= timedelta(0)
    assert entry.newest_backup == good
    [(subject, alert)] = notifier.alerts
    assert "orders" in subject
    assert alert["database"] == "orders"
    assert future in str(alert["message"]) and "clock skew" in str(alert["message"])
    assert alert["ahead_seconds"] == 2 * 86400


def test_freshness_alerts_a_database_whose_only_backup_is_dated_in_the_future(store: S3Store) -> None:
    # given no backup but one dated in 2099
    future = commit_backup(store, "orders", FAR_AHEAD)
    notifier = RecordingNotifier()

    # when the freshness check runs
    [entry] = FreshnessService(store, clock=lambda: NOW, notifier=notifier).check([RULE])

    # then it is alerted, naming that backup, and has no age
    assert entry.is_stale and entry.age is None
    [(_, alert)] = notifier.alerts
    assert future in str(alert["message"])


def test_a_backup_a_minute_ahead_of_the_check_is_fresh_with_age_zero(store: S3Store) -> None:
    # given a backup written by a machine whose clock is a minute ahead of the check's
    commit_backup(store, "orders", NOW + timedelta(minutes=1))
    notifier = RecordingNotifier()

    # when the freshness check runs
    [entry] = FreshnessService(store, clock=lambda: NOW, notifier=notifier).check([RULE])

    # then it is fresh, never with a negative age, and nothing is alerted
    assert (entry.status, entry.age) == ("fresh", timedelta(0))
    assert notifier.alerts == []
