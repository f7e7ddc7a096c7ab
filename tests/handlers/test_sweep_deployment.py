"""The sweep's scope (databases and byte budget) comes from its deployment; its event carries the time only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import BackstopError
from backstop.handlers.sweep import handler
from tests.catalog import publish_catalog, sqlite_entries
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import AlertInbox, FakeContext
from tests.services import at, run_backup

CHECKED_AT = "2026-11-23T03:00:00Z"


@pytest.fixture
def inbox(s3: Any, monkeypatch: pytest.MonkeyPatch) -> AlertInbox:
    """The sweep function deployed for orders only, with a budget of one byte (one backup per run)."""
    inbox = AlertInbox.create()
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", inbox.topic_arn)
    publish_catalog(monkeypatch, sqlite_entries("orders"))
    monkeypatch.setenv("BACKSTOP_BUDGET", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    return inbox


@pytest.fixture
def backups(make_config: Callable[..., Config], store: S3Store, tmp_path: Path) -> None:
    """Two backups of orders and one of uploads (a database the sweep was not deployed for)."""
    config = make_config(
        *(
            {"name": name, "engine": "sqlite", "path": str(create_orders_db(tmp_path / f"{name}.db", rows=50))}
            for name in ("orders", "uploads")
        )
    )
    for day in (21, 22):
        run_backup(config, store, at(day))
    run_backup(config, store, at(21), database="uploads")


def test_the_sweep_covers_the_databases_and_budget_of_its_deployment(inbox: AlertInbox, backups: None) -> None:
    # given a sweep deployed for orders with a one-byte budget
    # when its schedule sends the time
    result = handler({"checked_at": CHECKED_AT}, FakeContext())  # type: ignore[arg-type]

    # then it read one backup of orders, never uploads, and left the other backup of orders for later
    assert [b["database"] for b in result["backups"]] == ["orders"]
    assert (result["budget"], result["checked"], result["skipped"]) == (1, 1, 1)
    assert result["coverage"] == {"covered": 1, "committed": 2}
    assert inbox.envelopes() == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "smuggled",
    [{"databases": ["orders", "uploads"]}, {"budget": 10**15}, {"database": {"name": "uploads"}}],
    ids=["databases", "budget", "database"],
)
def test_a_sweep_event_carrying_its_scope_is_refused_in_one_sentence(
    inbox: AlertInbox, backups: None, store: S3Store, smuggled: dict[str, Any]
) -> None:
    # given an event that tries to widen the sweep (another database, a huge budget)
    event = {"checked_at": CHECKED_AT, **smuggled}

    # when the sweep is invoked with it
    with pytest.raises(BackstopError) as raised:
        handler(event, FakeContext())  # type: ignore[arg-type]

    # then it is refused in one sentence, and no backup was read or recorded
    message = str(raised.value)
    assert "refused" in message.lower() and "\n" not in message, message
    assert not [k for k in _keys(store) if k.endswith(".sweep.json")]


def _keys(store: S3Store) -> list[str]:
    return [o["Key"] for o in store.client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.parametrize("told", [True, False], ids=["retention-deployed", "retention-longer"])
def test_the_deployed_sweep_tells_lifecycles_delete_markers_from_an_overwrite(
    inbox: AlertInbox, backups: None, store: S3Store, s3: Any, monkeypatch: pytest.MonkeyPatch, told: bool
) -> None:
    # given the daily backup of the 22nd expired by lifecycle (a delete marker on its artifact first),
    # and a sweep three weeks later with the budget to read everything
    monkeypatch.setenv("BACKSTOP_BUDGET", str(10**9))
    # its catalog's retention: the one lifecycle applied, or (the fault) one that keeps dailies a month
    publish_catalog(monkeypatch, sqlite_entries("orders", orders={"daily": 7 if told else 30}))
    daily = store.get_manifest("orders-20261122T020000Z")
    assert daily.retention_tier == "daily"
    s3.delete_object(Bucket=BUCKET, Key=daily.object.key)

    # when the deployed sweep runs
    result = handler({"checked_at": "2026-12-15T03:00:00Z"}, FakeContext())  # type: ignore[arg-type]

    # then with the retention lifecycle applied, the marker is lifecycle's, not an alert;
    # with a longer one (the fault), the expired backup is reported overwritten
    overwritten = [e for e in inbox.envelopes() if "overwritten" in json.dumps(e)]
    assert (overwritten == [] and result.get("overwritten", []) == []) is told
