"""The restore function, driven step by step with the events/restore samples as the state machine would."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from backstop.handlers import restore as restore_handler
from backstop.restore_table import RestoreTable
from backstop.services.restore_workflow import RestoreInput, WrongConfirmationError
from tests.conftest import BUCKET, REGION, create_orders_db, table_rows
from tests.services import at, run_backup
from tests.store.test_restore_table import create_table

EVENTS = Path(__file__).resolve().parents[2] / "events" / "restore"
TABLE = "backstop-restores"


@dataclass
class FakeContext:
    function_name: str = "backstop-restore"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:backstop-restore"
    aws_request_id: str = "req-1"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


@pytest.mark.parametrize("sample", sorted(EVENTS.glob("*.json")), ids=lambda p: p.name)
def test_every_restore_sample_is_a_valid_execution_input(sample: Path) -> None:
    RestoreInput.model_validate_json(sample.read_text())


@pytest.fixture
def deployed(
    s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_config: Any, store: Any
) -> Iterator[dict[str, Any]]:
    """The restore function's environment on moto: bucket with a backup of orders, table, topic."""
    source = create_orders_db(tmp_path / "orders.db", rows=300)
    staging = create_orders_db(tmp_path / "staging.db", rows=10)
    entry = {"name": "orders", "engine": "sqlite", "path": str(source), "schedule": "rate(1 day)", "stale_after": "26h"}
    run_backup(make_config(entry), store, at(21))
    create_table(boto3.client("dynamodb", region_name=REGION))
    topic = boto3.client("sns", region_name=REGION).create_topic(Name="alerts")["TopicArn"]
    document = {
        "bucket": BUCKET,
        "prefix": "backups",
        "alerts_topic_arn": topic,
        "work_dir": str(tmp_path),
        "databases": [{**entry, "restore_targets": {"staging": {"path": str(staging)}, "in-place": {}}}],
    }
    monkeypatch.setenv("BACKSTOP_CONFIG_JSON", json.dumps(document))
    monkeypatch.setenv("BACKSTOP_RESTORE_TABLE", TABLE)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    restore_handler._workflow_for.cache_clear()
    yield {"source": source, "staging": staging}
    restore_handler._workflow_for.cache_clear()


def call(payload: dict[str, Any]) -> Any:
    return restore_handler.handler(payload, FakeContext())  # type: ignore[arg-type]


def test_the_latest_to_staging_sample_restores_after_approval(deployed: dict[str, Any]) -> None:
    # given the sample input, run through the steps as the state machine runs them
    data = json.loads((EVENTS / "latest-to-staging.json").read_text())
    state = call({"step": "resolve", "input": data, "execution": "exec-1"})
    for step in ("validate_artifact", "lock", "plan"):
        state = call({"step": step, "state": state})
    assert call({"step": "request_approval", "state": state, "token": "tok-1"}) is None

    # when it is approved with the phrase and the remaining steps run
    workflow = restore_handler._workflow()
    sent: list[Any] = []
    with pytest.raises(WrongConfirmationError):
        workflow.approve("exec-1", "RESTORE latest", "bob", lambda *args: sent.append(args))
    workflow.approve("exec-1", state["plan"]["confirmation"], "bob", lambda *args: sent.append(args))
    for step in ("safety_snapshot", "restore", "validate_target"):
        state = call({"step": step, "state": state})
    result = call({"step": "finish", "state": state, "outcome": "restored"})

    # then staging holds the backup, the audit is complete and the lock is free
    assert result["outcome"] == "restored" and sent == [("tok-1", {"approved_by": "bob"})]
    assert table_rows(deployed["staging"]) == table_rows(deployed["source"])
    table = RestoreTable(boto3.client("dynamodb", region_name=REGION), TABLE)
    audit = table.audit("exec-1") or {}
    assert audit["approver"] == "bob" and audit["outcome"] == "restored"
    assert audit["requested_by"] == "alice@example.com"
    assert table.holder("orders", "staging") is None


def test_an_unknown_step_is_refused(deployed: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Unknown restore step"):
        call({"step": "skip_approval", "state": {}})


def test_an_input_with_an_extra_key_is_refused_by_name(deployed: dict[str, Any]) -> None:
    data = {**json.loads((EVENTS / "dry-run.json").read_text()), "approved": True}
    with pytest.raises(Exception, match="approved"):
        call({"step": "resolve", "input": data, "execution": "exec-2"})
