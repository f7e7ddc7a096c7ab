"""The sweep function, driven with events/sweep/scheduled.json on real backups: alerts, records and metrics.

Its scope (the databases, the byte budget) is its environment, as infra sets it; the event carries the time.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.events import EventRefusedError
from backstop.handlers.sweep import handler
from backstop.manifest import Manifest
from backstop.sweep_events import SweepEvent
from local.emulator import flip_byte
from tests.catalog import publish_catalog, sqlite_entries
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import EVENTS, AlertInbox, FakeContext, load_event, metric_values
from tests.services import at, run_backup

SAMPLE = "sweep/scheduled.json"
CHECKED_AT = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)  # the sample's checked_at


@pytest.fixture
def inbox(s3: Any, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """The function's environment (bucket, prefix, alerts topic, databases, budget) and the operator's inbox."""
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_PREFIX", "backups")
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    publish_catalog(monkeypatch, sqlite_entries("orders", "uploads"))
    monkeypatch.setenv("BACKSTOP_BUDGET", str(10 * 1024**3))
    return inbox


@pytest.fixture
def backups(make_config: Callable[..., Config], store: S3Store, tmp_path: Path) -> dict[str, list[Manifest]]:
    """Two real backups of each database of the sample (orders and uploads, both SQLite), oldest first."""
    config = make_config(
        *(
            {"name": name, "engine": "sqlite", "path": str(create_orders_db(tmp_path / f"{name}.db", rows=200))}
            for name in ("orders", "uploads")
        )
    )
    return {
        name: [run_backup(config, store, at(day), database=name).manifest for day in (21, 22)]
        for name in ("orders", "uploads")
    }


def sweep(event: dict[str, Any] | None = None) -> dict[str, Any]:
    result: dict[str, Any] = handler(event or load_event(SAMPLE), FakeContext())  # type: ignore[arg-type]
    return result


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("sweep/*.json")), ids=lambda p: p.name)
def test_every_sweep_sample_validates_against_the_event_model(sample: Path) -> None:
    event = SweepEvent.model_validate_json(sample.read_text())

    assert event.checked_at == CHECKED_AT


def test_intact_backups_publish_nothing_and_report_what_was_read(
    store: S3Store, inbox: AlertInbox, backups: dict[str, list[Manifest]], capsys: pytest.CaptureFixture[str]
) -> None:
    # given two intact backups of each database
    # when the scheduled sweep runs
    result = sweep()

    # then the inbox stays empty, every backup was read, and the metrics say so per database and in all
    assert inbox.envelopes() == []
    assert (result["checked"], result["corrupt"], result["unreadable"], result["skipped"]) == (4, [], [], 0)
    assert result["coverage"] == {"covered": 4, "committed": 4}
    out = capsys.readouterr().out
    orders_bytes = sum(m.object.size for m in backups["orders"])
    uploads_bytes = sum(m.object.size for m in backups["uploads"])
    assert metric_values(out, "SweepBytesRead") == [
        ({"service": "sweep", "database": "orders"}, orders_bytes),
        ({"service": "sweep", "database": "uploads"}, uploads_bytes),
        ({"service": "sweep"}, orders_bytes + uploads_bytes),
    ]
    assert metric_values(out, "SweepBackupsChecked")[-1] == ({"service": "sweep"}, 4.0)
    assert metric_values(out, "SweepMismatches") == [
        ({"service": "sweep", "database": "orders"}, 0.0),
        ({"service": "sweep", "database": "uploads"}, 0.0),
        ({"service": "sweep"}, 0.0),
    ]
    record = store.get_sidecar(backups["orders"][0].backup_id, "sweep")
    assert record is not None
    assert (record["checked_at"], record["passed"]) == (CHECKED_AT.isoformat(), True)


def test_a_flipped_byte_reaches_the_inbox_with_the_backup_id_and_counts_as_a_mismatch(
    store: S3Store, inbox: AlertInbox, backups: dict[str, list[Manifest]], capsys: pytest.CaptureFixture[str]
) -> None:
    # given one rotted byte in the newest backup of uploads
    damaged = backups["uploads"][1]
    flip_byte(BUCKET, damaged.object.key, damaged.object.version_id, offset=damaged.object.size // 3)

    # when the scheduled sweep runs
    result = sweep()

    # then exactly one alert arrives, naming the backup
    [envelope] = inbox.envelopes()
    assert envelope["Subject"] == f"Backstop: backup {damaged.backup_id} is corrupt"
    alert = AlertInbox.message(envelope)
    assert (alert["event"], alert["database"], alert["backup_id"], alert["found_by"]) == (
        "backup_corrupt",
        "uploads",
        damaged.backup_id,
        "sweep",
    )
    assert result["corrupt"] == [damaged.backup_id]
    # and the mismatch metric counts it for uploads and for the whole run
    out = capsys.readouterr().out
    assert metric_values(out, "SweepMismatches") == [
        ({"service": "sweep", "database": "orders"}, 0.0),
        ({"service": "sweep", "database": "uploads"}, 1.0),
        ({"service": "sweep"}, 1.0),
    ]
    record = store.get_sidecar(damaged.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["finding"]) == (False, "corrupt")


def test_the_deployed_budget_bounds_the_run(
    store: S3Store, inbox: AlertInbox, backups: dict[str, list[Manifest]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a sweep deployed with a budget of one byte
    monkeypatch.setenv("BACKSTOP_BUDGET", "1")

    # when the sweep runs
    result = sweep()

    # then it read the oldest backup only, and left the other three for later runs
    assert [b["backup_id"] for b in result["backups"]] == [backups["orders"][0].backup_id]
    assert (result["budget"], result["checked"], result["skipped"]) == (1, 1, 3)
    assert result["coverage"] == {"covered": 1, "committed": 4}


def test_without_checked_at_the_current_time_applies(
    store: S3Store, inbox: AlertInbox, backups: dict[str, list[Manifest]]
) -> None:
    # given an empty event (an invocation by hand)
    before = datetime.now(UTC)

    # when the sweep runs
    result = handler({}, FakeContext())  # type: ignore[arg-type]

    # then all four fit the deployed 10 GiB, and their records carry the time of the run
    assert (result["budget"], result["checked"]) == (10 * 1024**3, 4)
    record = store.get_sidecar(backups["orders"][0].backup_id, "sweep")
    assert record is not None
    assert datetime.fromisoformat(record["checked_at"]) >= before


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "change",
    [
        lambda e: e.update(skip_alerts=True),
        lambda e: e.update(budget=1),
        lambda e: e.update(databases=["orders"]),
        lambda e: e.update(checked_at="2026-11-23T03:00:00"),
        lambda e: e.update(checked_at="yesterday"),
    ],
    ids=["extra-key", "budget", "databases", "naive-time", "not-a-time"],
)
def test_a_malformed_event_is_rejected_before_any_aws_call(
    s3: Any, inbox: AlertInbox, monkeypatch: pytest.MonkeyPatch, change: Any
) -> None:
    event = load_event(SAMPLE)
    change(event)
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    monkeypatch.setattr("backstop.bootstrap.s3_client", lambda: s3)

    with pytest.raises(EventRefusedError):
        sweep(event)

    assert calls == []
    assert inbox.envelopes() == []
