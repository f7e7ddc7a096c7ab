"""The scheduled backup function, driven with the sample in events/ (its executable spec)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from backstop.events import EventRefusedError, ScheduledBackupEvent
from backstop.handlers.backup import handler
from tests.conftest import BUCKET, create_orders_db

EVENTS = Path(__file__).resolve().parents[2] / "events"
SAMPLE = EVENTS / "backup" / "scheduled-orders.json"


@dataclass
class FakeContext:
    function_name: str = "backstop-backup"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:backstop-backup"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def _event_for(db: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The sample event, for the function deployed for orders at ``db`` (its configuration is its environment)."""
    monkeypatch.setenv("BACKSTOP_DATABASE", json.dumps({"name": "orders", "engine": "sqlite", "path": str(db)}))
    event: dict[str, Any] = json.loads(SAMPLE.read_text())
    return event


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("backup/*.json")), ids=lambda p: p.name)
def test_every_backup_sample_validates_against_the_event_model(sample: Path) -> None:
    ScheduledBackupEvent.model_validate_json(sample.read_text())


def test_scheduled_delivery_twice_creates_one_backup(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    event = _event_for(create_orders_db(tmp_path / "orders.db"), monkeypatch)

    first = handler(event, FakeContext())  # type: ignore[arg-type]
    second = handler(event, FakeContext())  # type: ignore[arg-type]

    assert first["backup_id"] == "orders-20261121T020000Z"
    assert first["created"] is True
    assert second == {**first, "created": False}
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=first["key"]).get("Versions", [])
    assert len(versions) == 1


def test_event_that_smuggles_extra_keys_is_rejected(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    event = _event_for(create_orders_db(tmp_path / "orders.db"), monkeypatch)
    event["skip_integrity_check"] = True

    with pytest.raises(EventRefusedError, match="skip_integrity_check is not accepted"):
        handler(event, FakeContext())  # type: ignore[arg-type]

    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
