"""The freshness function and a backup dated after the check: an alert naming it, never "fresh"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.handlers.freshness import handler
from tests.conftest import BUCKET
from tests.handlers import AlertInbox, FakeContext, commit_backup, load_event, metric_values

CHECKED_AT = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)  # the sample's checked_at


@pytest.fixture
def inbox(s3: Any, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    return inbox


def test_a_newest_backup_dated_after_the_check_is_alerted_as_clock_skew(
    store: S3Store, inbox: AlertInbox, capsys: pytest.CaptureFixture[str]
) -> None:
    # given last night's backups of both databases, and a manifest of orders dated in 2099
    good = commit_backup(store, "orders", CHECKED_AT - timedelta(hours=6))
    commit_backup(store, "uploads", CHECKED_AT - timedelta(hours=6))
    future = commit_backup(store, "orders", datetime(2099, 1, 1, tzinfo=UTC))

    # when the scheduled check runs
    result = handler(load_event("freshness/scheduled.json"), FakeContext())  # type: ignore[arg-type]

    # then orders is reported as needing a look, with its real newest backup and a non-negative age,
    [orders, uploads] = result["databases"]
    assert orders["status"] != "fresh" and result["stale"] == ["orders"]
    assert (orders["newest_backup"], orders["age_seconds"]) == (good, 6 * 3600)
    assert uploads["status"] == "fresh"
    # one alert names the future-dated backup and how far ahead it is,
    [envelope] = inbox.envelopes()
    alert = AlertInbox.message(envelope)
    assert alert["database"] == "orders" and future in alert["message"] and "clock skew" in alert["message"]
    assert alert["ahead_seconds"] == int((datetime(2099, 1, 1, tzinfo=UTC) - CHECKED_AT).total_seconds())
    # and the age metric is the real backup's, so the stale alarm keeps working
    out = capsys.readouterr().out
    assert ({"service": "freshness", "database": "orders"}, 6 * 3600.0) in metric_values(out, "NewestBackupAgeSeconds")
    assert metric_values(out, "StaleDatabases") == [({"service": "freshness"}, 1.0)]
