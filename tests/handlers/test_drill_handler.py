"""The scheduled drill function, driven with the sample in events/drill."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.events import EventRefusedError, ScheduledDrillEvent
from backstop.handlers.drill import handler
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import deploy_database
from tests.handlers.test_backup_handler import FakeContext
from tests.services import at, run_backup

SAMPLE = Path(__file__).resolve().parents[2] / "events" / "drill" / "scheduled-orders.json"


def test_the_drill_sample_validates_against_the_event_model() -> None:
    ScheduledDrillEvent.model_validate_json(SAMPLE.read_text())


def test_a_scheduled_drill_restores_the_newest_backup_and_reports_it(
    s3: Any, store: S3Store, make_config: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = create_orders_db(tmp_path / "orders.db", rows=100)
    manifest = run_backup(
        make_config({"name": "orders", "engine": "sqlite", "path": str(source)}), store, at(21)
    ).manifest
    deploy_database(
        monkeypatch,
        {
            "name": "orders",
            "engine": "sqlite",
            "path": str(source),
            "restore_targets": {"staging": {"path": str(tmp_path / "staging.db")}},
        },
    )
    event = json.loads(SAMPLE.read_text())
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")

    result = handler(event, FakeContext())  # type: ignore[arg-type]

    assert result["passed"] is True and result["backup_id"] == manifest.backup_id
    assert (store.get_sidecar(manifest.backup_id, "drill") or {})["passed"] is True


def test_a_drill_event_cannot_smuggle_a_target(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    deploy_database(monkeypatch, {"name": "orders", "engine": "sqlite", "path": str(tmp_path / "orders.db")})
    event = json.loads(SAMPLE.read_text())
    event["target"] = str(tmp_path)
    with pytest.raises(EventRefusedError, match="target is not accepted"):
        handler(event, FakeContext())  # type: ignore[arg-type]
