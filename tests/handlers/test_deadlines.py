"""Every scheduled function stops cleanly a margin before its Lambda timeout (backstop.deadline).

The functions run in-process on moto with a FakeContext whose remaining time drops at every look
(``tick_ms``): the deadline passes after a known amount of checking, never after a real wait. Each
test asserts what an operator would see: the lock released, no multipart upload left, exactly one
alert saying how long the run had and what to do, and a retry of the same run that goes ahead.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import DeadlineExceededError
from backstop.handlers.backup import handler as backup_handler
from backstop.handlers.drill import handler as drill_handler
from backstop.handlers.retention_guard import handler as guard_handler
from backstop.handlers.sweep import handler as sweep_handler
from tests.catalog import publish_catalog, sqlite_entries
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import AlertInbox, FakeContext, deploy_database, load_event
from tests.services import at, failure_records, keys_under, open_uploads, run_backup

LOCK = "backups/_locks/orders.backup.json"
TIMED_OUT = re.compile(r"timed out after (\d+) s \(the function's timeout is 60 s\): ")


def stopped_after(error: BaseException) -> int:
    """The N of "timed out after N s (the function's timeout is 60 s)"."""
    found = TIMED_OUT.search(str(error))
    assert found is not None, str(error)
    return int(found.group(1))


def a_minute_ticking(tick_ms: int) -> FakeContext:
    """A function with a 60 s timeout (a 12 s margin) whose clock moves ``tick_ms`` at every look at it."""
    return FakeContext(remaining_ms=60_000, tick_ms=tick_ms)


@pytest.fixture
def inbox(s3: Any, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """The vault and the alerts topic every function's environment names, and the operator's inbox."""
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_PREFIX", "backups")
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    return inbox


def sixteen_mib_database(path: Path) -> Path:
    """The orders database with 16 MiB of incompressible rows: its backup streams 16 chunks of 1 MiB."""
    create_orders_db(path, rows=100)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE attachments (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    conn.executemany("INSERT INTO attachments (body) VALUES (?)", [(os.urandom(64 * 1024),) for _ in range(256)])
    conn.commit()
    conn.close()
    return path


def test_a_backup_stops_at_its_deadline_aborts_its_upload_releases_its_lock_and_alerts_once(
    inbox: AlertInbox, s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the orders function (60 s timeout) and a database whose stream outlasts its deadline
    source = sixteen_mib_database(tmp_path / "orders.db")
    deploy_database(monkeypatch, {"name": "orders", "engine": "sqlite", "path": str(source)})
    event = load_event("backup/scheduled-orders.json")
    started: list[dict[str, Any]] = []
    upload = S3Store.upload

    def watched_upload(self: S3Store, key: str, *args: Any, **kwargs: Any) -> Any:
        # what the run holds as its upload starts: the run lock, with the expiry it was written with
        started.append(json.loads(s3.get_object(Bucket=BUCKET, Key=LOCK)["Body"].read()))
        return upload(self, key, *args, **kwargs)

    monkeypatch.setattr(S3Store, "upload", watched_upload)

    # when the schedule invokes it, and Lambda retries the failed invocation on the same clock
    for _attempt in range(2):
        with pytest.raises(DeadlineExceededError) as stopped:
            backup_handler(event, a_minute_ticking(5_000))  # type: ignore[arg-type]

        # then it stopped mid-stream, past its deadline (48 s) and before its timeout: upload aborted, lock
        # released, nothing committed
        assert len(started) == _attempt + 1
        assert 48 <= stopped_after(stopped.value) < 60
        assert open_uploads(s3) == []
        assert LOCK not in keys_under(s3, "backups/_locks/")
        assert keys_under(s3, "backups/orders/") == []

    # and the lock it held would have expired 15 s after the function's own timeout, not hours later
    held_for = datetime.fromisoformat(started[0]["expires_at"]) - datetime.fromisoformat(started[0]["acquired_at"])
    assert timedelta(seconds=60) < held_for <= timedelta(seconds=60 + 15)
    # and one alert says how long the run had and what to do; the retry's failure is counted, not alerted
    (alert,) = inbox.alerts()
    assert alert["event"] == "backup_failed" and alert["error"] == "DeadlineExceededError"
    assert re.fullmatch(
        r"The backup of orders timed out after \d+ s \(the function's timeout is 60 s\): raise "
        r"databases\[\]\.function\.timeout, or use a runner without Lambda's 15-minute limit\.",
        str(alert["message"]),
    )
    (record,) = failure_records(s3)
    assert record["attempts"] == 2 and record["message"] == alert["message"]

    # when Lambda's last retry has the time it needs, then it runs: nothing is "already running"
    result = backup_handler(event, FakeContext())  # type: ignore[arg-type]
    assert result["created"] is True
    assert inbox.alerts() == []


def test_a_drill_stops_at_its_deadline_cleans_its_scratch_space_and_alerts_once(
    inbox: AlertInbox, s3: Any, store: S3Store, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a committed backup of orders, and its drill function (60 s timeout) drilling into a scratch directory
    source = create_orders_db(tmp_path / "orders.db", rows=300)
    scratch = tmp_path / "drills"
    entry = {"name": "orders", "engine": "sqlite", "path": str(source), "drill": {"path": str(scratch)}}
    manifest = run_backup(make_config(entry), store, at(21)).manifest
    deploy_database(monkeypatch, entry)
    event = load_event("drill/scheduled-orders.json")

    # when the drill's deadline passes as it starts downloading the backup
    result = drill_handler(event, a_minute_ticking(25_000))  # type: ignore[arg-type]

    # then the drill stopped there, failed, removed what it had written and said why, once
    assert result["passed"] is False and result["backup_id"] == manifest.backup_id
    assert 48 <= stopped_after(DeadlineExceededError(result["detail"])) < 60
    assert result["detail"].startswith("The drill of orders timed out after ")
    assert list(scratch.iterdir()) == []
    assert (store.get_sidecar(manifest.backup_id, "drill") or {})["detail"] == result["detail"]
    (alert,) = inbox.alerts()
    assert alert["event"] == "drill_failed" and alert["detail"] == result["detail"]
    assert open_uploads(s3) == []

    # when the drill runs again with the time it needs, then it passes, and nothing more is alerted
    assert drill_handler(event, FakeContext())["passed"] is True  # type: ignore[arg-type]
    assert inbox.alerts() == []


def test_the_sweep_stops_between_backups_at_its_deadline_and_the_next_run_reads_the_rest(
    inbox: AlertInbox, s3: Any, store: S3Store, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two backups of each of orders and uploads, and the sweep function (60 s timeout) over both
    config = make_config(
        *(
            {"name": name, "engine": "sqlite", "path": str(create_orders_db(tmp_path / f"{name}.db", rows=200))}
            for name in ("orders", "uploads")
        )
    )
    for name in ("orders", "uploads"):
        for day in (21, 22):
            run_backup(config, store, at(day), database=name)
    publish_catalog(monkeypatch, sqlite_entries("orders", "uploads"))
    monkeypatch.setenv("BACKSTOP_BUDGET", str(10 * 1024**3))
    event = load_event("sweep/scheduled.json")

    # when its deadline passes after the first backup it read, well within its byte budget
    first = sweep_handler(event, a_minute_ticking(16_000))  # type: ignore[arg-type]

    # then it stopped there, reporting what it read and what it left, and alerted once
    assert 1 <= first["checked"] < 4 and first["skipped"] == 4 - first["checked"]
    assert first["corrupt"] == [] and first["unreadable"] == []
    assert 48 <= stopped_after(DeadlineExceededError(str(first["timed_out"]))) < 60
    (alert,) = inbox.alerts()
    assert alert["event"] == "sweep_timed_out" and alert["message"] == first["timed_out"]
    assert "lower sweep.budget" in alert["message"]

    # when the next run has the time it needs, then it reads the backups left, first, and alerts nothing
    second = sweep_handler(event, FakeContext())  # type: ignore[arg-type]
    read_first = {b["backup_id"] for b in first["backups"]}  # type: ignore[union-attr]
    read_next = [b["backup_id"] for b in second["backups"]]  # type: ignore[union-attr]
    assert second["timed_out"] is None and second["coverage"] == {"covered": 4, "committed": 4}
    assert set(read_next[: len(read_next) - len(read_first)]).isdisjoint(read_first)
    assert inbox.alerts() == []


def test_the_guard_stops_between_databases_at_its_deadline_and_the_next_run_holds_the_rest(
    inbox: AlertInbox, s3: Any, store: S3Store, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a backup of each of orders and uploads, and the guard function (60 s timeout) over both
    config = make_config(
        *(
            {"name": name, "engine": "sqlite", "path": str(create_orders_db(tmp_path / f"{name}.db", rows=50))}
            for name in ("orders", "uploads")
        )
    )
    backups = {
        name: run_backup(config, store, at(21), database=name).manifest.backup_id for name in ("orders", "uploads")
    }
    publish_catalog(monkeypatch, sqlite_entries("orders", "uploads"))
    event = load_event("guard/scheduled.json")

    # when its deadline passes after the first database
    first = guard_handler(event, a_minute_ticking(25_000))  # type: ignore[arg-type]

    # then orders is held, uploads was not reached, and one alert says so
    assert first["held"] == {"orders": [backups["orders"]]}
    assert 48 <= stopped_after(DeadlineExceededError(str(first["timed_out"]))) < 60
    (alert,) = inbox.alerts()
    assert alert["event"] == "guard_timed_out" and alert["not_reached"] == ["uploads"]
    assert alert["message"] == first["timed_out"]

    # when the next run has the time it needs, then it holds both, and alerts nothing
    second = guard_handler(event, FakeContext())  # type: ignore[arg-type]
    assert second["held"] == {name: [backup_id] for name, backup_id in backups.items()}
    assert second["timed_out"] is None
    assert inbox.alerts() == []
