"""The scheduled backup function with the size anomaly check: alert on the topic, BackupSizeAnomaly metric."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.handlers.backup import handler
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import AlertInbox, FakeContext, deploy_database, load_event, metric_values


@pytest.fixture
def inbox(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    deploy_database(monkeypatch, {"name": "orders", "engine": "sqlite", "path": str(tmp_path / "orders.db")})
    return inbox


def back_up(db: Path, nights_before: int) -> dict[str, Any]:
    """The sample schedule's run of ``nights_before`` nights before the sample's scheduled time."""
    event = load_event("backup/scheduled-orders.json")
    when = datetime.fromisoformat(event["scheduled_time"]) - timedelta(days=nights_before)
    event["scheduled_time"] = when.isoformat()
    result: dict[str, Any] = handler(event, FakeContext(function_name="backstop-backup"))  # type: ignore[arg-type]
    return result


def test_a_shrunken_backup_is_committed_alerted_and_counted(
    inbox: AlertInbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given three nights of backups of orders, then nearly all its orders deleted
    db = create_orders_db(tmp_path / "orders.db", rows=3000)
    for nights_before in (3, 2, 1):
        back_up(db, nights_before)
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
        conn.commit()
        conn.execute("VACUUM")
    capsys.readouterr()

    # when tonight's scheduled backup runs
    result = back_up(db, 0)

    # then the backup is committed, its result carries the warning, the topic the alert, and the metric says 1
    assert result["created"] is True
    [warning] = result["warnings"]
    assert "orders-20261121T020000Z" in warning
    [envelope] = inbox.envelopes()
    assert envelope["Subject"] == "Backstop: backup of orders is far smaller than usual"
    alert = AlertInbox.message(envelope)
    assert (alert["event"], alert["database"], alert["backup_id"]) == (
        "backup_size_anomaly",
        "orders",
        "orders-20261121T020000Z",
    )
    assert alert["message"] == warning
    assert metric_values(capsys.readouterr().out, "BackupSizeAnomaly") == [
        ({"service": "backup", "database": "orders"}, 1.0)
    ]


def test_steady_backups_publish_nothing_and_count_zero(
    inbox: AlertInbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # given a database that does not change
    db = create_orders_db(tmp_path / "orders.db", rows=3000)

    # when it is backed up four nights in a row
    results = [back_up(db, nights_before) for nights_before in (3, 2, 1, 0)]

    # then no warning, no alert, and every committed backup reports 0
    assert [r["warnings"] for r in results] == [[]] * 4
    assert inbox.envelopes() == []
    assert [value for _, value in metric_values(capsys.readouterr().out, "BackupSizeAnomaly")] == [0.0] * 4
