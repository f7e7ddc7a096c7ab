"""The restore and approval functions' entry points, invoked directly as anyone with lambda:InvokeFunction could.

The happy path runs through the synthesized state machine (tests/workflow); here each entry point
is called with hand-made payloads and must refuse them before touching anything.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from backstop import bootstrap
from backstop.adapters.restore_table import RestoreTable
from backstop.errors import ConfigError, RestoreError, UnauthorizedStepError
from backstop.handlers import approval as approval_handler
from backstop.handlers import restore as restore_handler
from backstop.services.restore_workflow import RestoreInput, parse_input
from tests.catalog import publish_catalog
from tests.conftest import BUCKET, REGION, create_orders_db
from tests.services import at, run_backup
from tests.store.test_restore_table import create_table

EVENTS = Path(__file__).resolve().parents[2] / "events" / "restore"
TABLE = "backstop-restores"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:Backstop-restore"


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
    }
    monkeypatch.setenv("BACKSTOP_CONFIG_JSON", json.dumps(document))
    publish_catalog(monkeypatch, [{**entry, "restore_targets": {"staging": {"path": str(staging)}, "in-place": {}}}])
    key = boto3.client("kms", region_name=REGION).create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    monkeypatch.setenv("BACKSTOP_RESTORE_TABLE", TABLE)
    monkeypatch.setenv("BACKSTOP_STATE_MACHINE_ARN", MACHINE)
    monkeypatch.setenv("BACKSTOP_APPROVAL_KEY_ARN", key["KeyMetadata"]["Arn"])
    monkeypatch.setenv("BACKSTOP_ALERTS_TOPIC_ARN", topic)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    bootstrap.clear_cache()
    yield {
        "source": source,
        "staging": staging,
        "table": RestoreTable(boto3.client("dynamodb", region_name=REGION), TABLE),
    }
    bootstrap.clear_cache()


def call(payload: dict[str, Any], handler: Any = restore_handler.handler) -> Any:
    return handler(payload, FakeContext())


def refusals(table: RestoreTable) -> list[dict[str, Any]]:
    return [r for r in table.audits(50) if str(r["execution"]).startswith("refusal-")]


@pytest.mark.parametrize("step", ["resolve", "lock", "safety_snapshot", "restore", "rollback", "finish"])
def test_a_hand_made_payload_is_refused_before_anything_is_touched(deployed: dict[str, Any], step: str) -> None:
    # given the sample input and a state that claims everything was approved
    data = json.loads((EVENTS / "latest-to-staging.json").read_text())
    before = deployed["staging"].read_bytes()
    payload = {
        "step": step,
        "execution": MACHINE.replace(":stateMachine:", ":execution:") + ":exec-1",
        "input": data,
        "state": {"execution": "exec-1", "database": "orders", "target": "staging", "approval": {"grant": "yes"}},
        "outcome": "restored",
    }

    # when the function is invoked directly with it
    with pytest.raises(UnauthorizedStepError, match="no execution"):
        call(payload)

    # then nothing was written but a refusal record: no lock, no audit of exec-1, staging's bytes the same
    assert deployed["staging"].read_bytes() == before
    assert deployed["table"].holder("orders", "staging") is None
    assert deployed["table"].audit("exec-1") is None
    (refusal,) = refusals(deployed["table"])
    assert refusal["step"] == step and refusal["function"] == "restore" and refusal["database"] == "orders"


def test_an_execution_of_another_state_machine_is_refused(deployed: dict[str, Any]) -> None:
    other = "arn:aws:states:us-east-1:123456789012:execution:someone-elses-machine:exec-1"
    with pytest.raises(UnauthorizedStepError, match="not an execution of this stack"):
        call({"step": "restore", "execution": other, "state": {"database": "orders", "target": "staging"}})


def test_an_unknown_step_is_refused(deployed: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Unknown restore step"):
        call({"step": "skip_approval", "state": {}})


def test_an_input_with_an_extra_key_is_refused_by_name() -> None:
    data = {**json.loads((EVENTS / "dry-run.json").read_text()), "approved": True}
    with pytest.raises(RestoreError, match="approved"):
        parse_input(data)


def test_the_approval_function_refuses_a_malformed_request_in_one_sentence(deployed: dict[str, Any]) -> None:
    with pytest.raises(RestoreError, match="The approval request is invalid: identity"):
        call({"action": "approve", "execution": "exec-1", "phrase": "RESTORE x"}, approval_handler.handler)


def test_the_approval_function_refuses_an_execution_that_is_not_waiting(deployed: dict[str, Any]) -> None:
    proof = {"url": "https://sts.us-east-1.amazonaws.com/", "headers": {}, "body": "Action=GetCallerIdentity"}
    with pytest.raises(UnauthorizedStepError, match="no execution"):
        call(
            {"action": "approve", "execution": "exec-1", "phrase": "RESTORE x", "identity": proof},
            approval_handler.handler,
        )
    assert deployed["table"].audit("exec-1") is None


def test_identify_requester_invoked_directly_is_refused_and_recorded(deployed: dict[str, Any]) -> None:
    payload = {"step": "identify_requester", "execution": MACHINE.replace(":stateMachine:", ":execution:") + ":x"}
    with pytest.raises(UnauthorizedStepError):
        call(payload, approval_handler.handler)
    assert refusals(deployed["table"])[0]["function"] == "approval"


def test_a_catalog_rewritten_outside_a_deploy_stops_every_step_before_anything_is_touched(
    deployed: dict[str, Any], tmp_path: Path
) -> None:
    # given the catalog's part rewritten to point the staging target at another file (ssm:PutParameter, no deploy)
    ssm = boto3.client("ssm", region_name=REGION)
    (parameter,) = ssm.get_parameters_by_path(Path="/backstop/Backstop/databases")["Parameters"]
    elsewhere = tmp_path / "elsewhere.db"
    value = parameter["Value"].replace(str(deployed["staging"]), str(elsewhere))
    assert value != parameter["Value"]
    ssm.put_parameter(Name=parameter["Name"], Value=value, Type="String", Overwrite=True)
    before = deployed["staging"].read_bytes()
    data = json.loads((EVENTS / "latest-to-staging.json").read_text())

    # when any step runs (here the first of an execution), then it refuses the catalog in one sentence
    with pytest.raises(ConfigError, match="is not the one this function was deployed with"):
        call({"step": "resolve", "execution": MACHINE.replace(":stateMachine:", ":execution:") + ":e", "input": data})

    # and nothing was restored, locked or created
    assert deployed["staging"].read_bytes() == before
    assert deployed["table"].holder("orders", "staging") is None
    assert not elsewhere.exists()
