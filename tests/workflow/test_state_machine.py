"""The synthesized restore state machine, executed by moto with the real handlers running in-process.

The stack's template is synthesized, stood up on the embedded emulator resource by resource
(``local.stack``), and the state machine is started exactly as the console would start it, with
the samples in events/restore. Each test asserts the target's data, the lock, the audit record
and what reached the alerts topic.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App
from aws_cdk.assertions import Template

from backstop.adapters.restore_table import RestoreTable
from backstop.adapters.s3_store import S3Store
from backstop.adapters.sts import sign_proof
from backstop.config import Config, parse_config
from backstop.errors import ApprovalNotPendingError
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from infra.stack import BackstopStack
from local.emulator import Emulator, running
from local.lambdas import InvocationLog, in_process_lambdas
from local.principals import user_session
from local.stack import Deployed, stand_up
from tests.conftest import table_rows

pytestmark = pytest.mark.xdist_group("emulator")

EVENTS = Path(__file__).resolve().parents[2] / "events" / "restore"
BUCKET = "backstop-workflow-test"


def synthesize(config: Config, approval: timedelta | None = None) -> dict[str, Any]:
    """The Backstop stack's template for the emulator, as `make local` deploys it.

    ``approval`` shortens the Approval state's wait in the template (the config allows 5 minutes
    at least), so the timeout test waits seconds, not minutes; nothing else is changed.
    """
    stack = BackstopStack(App(), "Backstop", config=config, emulated=True)
    template = dict(Template.from_stack(stack).to_json())
    if approval is not None:
        configured = f'"TimeoutSeconds":{int(config.restore.approval_timeout.total_seconds())}'
        shortened = f'"TimeoutSeconds":{int(approval.total_seconds())}'
        machine = next(r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine")
        text = json.dumps(machine["Properties"]["DefinitionString"])
        assert text.count(configured.replace('"', '\\"')) == 1, "the approval's timeout is not in the definition"
        machine["Properties"]["DefinitionString"] = json.loads(
            text.replace(configured.replace('"', '\\"'), shortened.replace('"', '\\"'))
        )
    return template


class World:
    config: Config
    store: S3Store

    def __init__(self, emulator: Emulator, deployed: Deployed, template: dict[str, Any], calls: InvocationLog) -> None:
        self.emulator = emulator
        self.deployed = deployed
        self.calls = calls
        self.sfn = emulator.client("stepfunctions")
        self.lambdas = emulator.client("lambda")
        kinds = {logical: r["Type"] for logical, r in template["Resources"].items()}
        self.approval_function = next(
            deployed.refs[k]
            for k, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"]["ImageConfig"]["Command"] == ["backstop.handlers.approval.handler"]
        )
        self.restore_function = next(
            deployed.refs[k]
            for k, r in template["Resources"].items()
            if r["Type"] == "AWS::Lambda::Function"
            and r["Properties"]["ImageConfig"]["Command"] == ["backstop.handlers.restore.handler"]
        )
        self.alice = user_session(emulator, "alice")
        self.bob = user_session(emulator, "bob")
        self.machine = next(deployed.refs[k] for k, t in kinds.items() if t == "AWS::StepFunctions::StateMachine")
        table_name = next(deployed.refs[k] for k, t in kinds.items() if t == "AWS::DynamoDB::Table")
        self.table = RestoreTable(emulator.client("dynamodb"), table_name)
        topic = next(deployed.refs[k] for k, t in kinds.items() if t == "AWS::SNS::Topic")
        sqs = emulator.client("sqs")
        self.queue = sqs.create_queue(QueueName="alerts-reader")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        emulator.client("sns").subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)

    def execution_arn(self, name: str) -> str:
        return self.machine.replace(":stateMachine:", ":execution:") + f":{name}"

    def start(self, data: dict[str, Any], name: str, *, requester: Any = None) -> str:
        """Start as the console does; with ``requester`` (a session), as `backstop restore-request` does."""
        if requester is not None:
            proof = sign_proof(
                "request", self.execution_arn(name), session=requester, endpoint_url=self.emulator.endpoint
            )
            data = {**data, "identity": proof.model_dump()}
        return str(
            self.sfn.start_execution(stateMachineArn=self.machine, name=name, input=json.dumps(data))["executionArn"]
        )

    def invoke(self, function: str, payload: dict[str, Any]) -> tuple[bool, Any]:
        """(succeeded, body) of a direct invocation, as anyone with lambda:InvokeFunction could make it."""
        response = self.lambdas.invoke(FunctionName=function, Payload=json.dumps(payload).encode())
        return not response.get("FunctionError"), json.loads(response["Payload"].read() or b"null")

    def answer(self, action: str, name: str, session: Any, **fields: Any) -> tuple[bool, Any]:
        """`backstop approve|reject` as ``session``'s principal: a signed proof, then the approval function."""
        arn = self.execution_arn(name)
        proof = sign_proof(action, arn, session=session, endpoint_url=self.emulator.endpoint)  # type: ignore[arg-type]
        return self.invoke(
            self.approval_function, {"action": action, "execution": arn, "identity": proof.model_dump(), **fields}
        )

    def approve(self, name: str, phrase: str, session: Any = None) -> Any:
        ok, body = self.answer("approve", name, session or self.bob, phrase=phrase)
        assert ok, body
        return body

    def reject(self, name: str, reason: str, session: Any = None) -> Any:
        ok, body = self.answer("reject", name, session or self.bob, reason=reason)
        assert ok, body
        return body

    def token(self, arn: str) -> str:
        """The task token of the approval wait, as anyone allowed GetExecutionHistory reads it."""
        for event in self.history(arn):
            if "taskScheduledEventDetails" in event:
                return str(json.loads(event["taskScheduledEventDetails"]["parameters"])["Payload"]["token"])
        pytest.fail("no task token in the history")

    def wait_for_approval(self, name: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self.table.pending(name)
                return
            except ApprovalNotPendingError:  # not yet
                time.sleep(0.1)
        pytest.fail(f"{name} never asked for approval")

    def wait(self, arn: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            described: dict[str, Any] = self.sfn.describe_execution(executionArn=arn)
            if described["status"] != "RUNNING":
                return described
            time.sleep(0.2)
        pytest.fail(f"{arn} still running")

    def send_success(self, token: str, output: dict[str, Any]) -> None:
        self.sfn.send_task_success(taskToken=token, output=json.dumps(output))

    def send_failure(self, token: str, error: str, cause: str) -> None:
        self.sfn.send_task_failure(taskToken=token, error=error, cause=cause)

    def alerts(self, at_least: int = 0, timeout: float = 10) -> list[dict[str, Any]]:
        """Alerts delivered since the last call (waiting for ``at_least`` of them)."""
        found = self.emulator.read_alerts(self.queue)
        deadline = time.monotonic() + timeout
        while len(found) < at_least and time.monotonic() < deadline:
            time.sleep(0.1)
            found += self.emulator.read_alerts(self.queue)
        return found

    def history(self, arn: str) -> list[dict[str, Any]]:
        return list(self.sfn.get_execution_history(executionArn=arn, maxResults=1000)["events"])


def build_world(
    paths: dict[str, Path], approval: timedelta | None = None, *, restore: dict[str, Any] | None = None
) -> Iterator[World]:
    paths["work"].mkdir(exist_ok=True)
    entry = {
        "name": "orders",
        "engine": "sqlite",
        "path": str(paths["source"]),
        "schedule": "cron(0 2 * * ? *)",
        "stale_after": "26h",
    }
    entry["restore_targets"] = {"staging": {"path": str(paths["staging"])}, "in-place": {}}
    top: dict[str, Any] = {"bucket": BUCKET, "work_dir": str(paths["work"]), "databases": [entry]}
    config = parse_config(json.dumps({**top, "restore": restore} if restore else top))
    template = synthesize(config, approval)
    saved = os.environ.get("MOTO_PORT")
    with running() as emulator:
        emulator.execute_workflows()
        deployed = stand_up(emulator, template)
        store = S3Store(emulator.client("s3"), bucket=BUCKET, prefix="backups")
        BackupService(config, store).run(
            BackupRequest("orders", datetime(2026, 11, 21, 2, tzinfo=UTC), "scheduled", Trigger(kind="user", by="t"))
        )
        with in_process_lambdas(extra_env=emulator.env) as calls:
            world = World(emulator, deployed, template, calls)
            world.config = config
            world.store = store
            yield world
    if saved is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = saved


@pytest.fixture
def world(paths: dict[str, Path]) -> Iterator[World]:
    yield from build_world(paths)


def sample(name: str, **changes: Any) -> dict[str, Any]:
    return {**json.loads((EVENTS / name).read_text()), **changes}


def test_an_approved_restore_of_sqlite_runs_every_state_and_leaves_an_audit_trail(
    world: World, paths: dict[str, Path]
) -> None:
    # given the console's input for latest -> staging
    arn = world.start(sample("latest-to-staging.json"), "run-approved")
    world.wait_for_approval("run-approved")
    plan_alert = world.alerts(at_least=1)[-1]
    backup_id = plan_alert["message"]["plan"]["backup_id"]

    # when a wrong phrase is tried, then the right one
    ok, refused = world.answer("approve", "run-approved", world.bob, phrase="RESTORE latest")
    assert not ok and "stays pending" in refused["errorMessage"]
    approved = world.approve("run-approved", f"RESTORE {backup_id}")["approved"]
    described = world.wait(arn)

    # then the execution succeeded through every state, staging equals the source, the lock is free
    assert described["status"] == "SUCCEEDED", described
    entered = [e["stateEnteredEventDetails"]["name"] for e in world.history(arn) if "stateEnteredEventDetails" in e]
    assert entered == [
        "Resolve", "IdentifyRequester", "ValidateArtifact", "Lock", "Plan", "DryRun?", "Approval", "CheckApproval",
        "SafetySnapshot", "Restore", "ValidateTarget", "FinishRestored", "Restored",
    ]  # fmt: skip
    assert table_rows(paths["staging"]) == table_rows(paths["source"])
    assert world.table.holder("orders", "staging") is None
    audit = world.table.audit("run-approved") or {}
    bob = world.bob.client("iam", endpoint_url=world.emulator.endpoint).get_user(UserName="bob")["User"]
    assert audit["outcome"] == "restored" and audit["approver"] == bob["Arn"]
    assert audit["approver_principal"] == f"user:{bob['UserId']}"
    assert approved["backup_id"] == backup_id and approved["approver"] == bob["Arn"]
    assert audit["requester"] == {"verified": False, "principal": None, "arn": None, "claimed": "alice@example.com"}
    assert audit["safety_snapshot"]["backup_id"].startswith("orders-pre-restore-staging-")
    assert "awaits approval" in plan_alert["subject"]
    assert [a["message"]["event"] for a in world.alerts(at_least=1)] == ["restore_finished"]
    # and the task token reached neither the audit record nor any alert
    token_free = json.dumps(audit) + json.dumps(plan_alert)
    assert '"token"' not in token_free


def test_a_dry_run_reports_the_plan_and_touches_nothing(world: World, paths: dict[str, Path]) -> None:
    before = table_rows(paths["staging"])
    described = world.wait(world.start(sample("dry-run.json", target="staging"), "run-dry"))
    assert described["status"] == "SUCCEEDED"
    assert table_rows(paths["staging"]) == before
    assert world.table.holder("orders", "staging") is None
    assert (world.table.audit("run-dry") or {})["outcome"] == "dry run"


def test_a_rejection_ends_the_execution_with_the_target_untouched(world: World, paths: dict[str, Path]) -> None:
    before = table_rows(paths["staging"])
    arn = world.start(sample("latest-to-staging.json"), "run-rejected")
    world.wait_for_approval("run-rejected")
    world.reject("run-rejected", "wrong backup")
    described = world.wait(arn)
    assert described["status"] == "FAILED" and described["error"] == "RestoreFailed"
    assert table_rows(paths["staging"]) == before
    assert world.table.holder("orders", "staging") is None
    audit = world.table.audit("run-rejected") or {}
    assert audit["outcome"] == "not restored" and "RestoreRejectedError" in audit["failure_reason"]


def test_a_second_restore_of_a_locked_target_fails_before_approval(world: World, paths: dict[str, Path]) -> None:
    world.start(sample("latest-to-staging.json"), "run-first")
    world.wait_for_approval("run-first")
    described = world.wait(world.start(sample("latest-to-staging.json"), "run-second"))
    assert described["status"] == "FAILED"
    audit = world.table.audit("run-second") or {}
    assert "TargetLockedError" in audit["failure_reason"] and "run-first" in audit["failure_reason"]
    assert (world.table.holder("orders", "staging") or {})["owner"] == "run-first"


def test_an_input_trying_to_skip_approval_is_refused(world: World) -> None:
    described = world.wait(world.start(sample("latest-to-staging.json", skip_approval=True), "run-extra"))
    assert described["status"] == "FAILED"
    assert world.table.holder("orders", "staging") is None


def test_a_restore_failing_after_the_snapshot_is_rolled_back(world: World, paths: dict[str, Path]) -> None:
    # given a restore whose target is damaged right after the swap (the post-restore validation fails)
    before = table_rows(paths["staging"])
    from backstop.services import restore_workflow

    original = restore_workflow.RestoreWorkflow.restore

    def restore_then_damage(self: Any, state: dict[str, Any]) -> dict[str, Any]:
        result = original(self, state)
        with sqlite3.connect(paths["staging"]) as conn:
            conn.execute("DELETE FROM orders WHERE id % 3 = 0")
        return result

    restore_workflow.RestoreWorkflow.restore = restore_then_damage  # type: ignore[method-assign]
    try:
        arn = world.start(sample("latest-to-staging.json"), "run-rollback")
        world.wait_for_approval("run-rollback")
        backup_id = world.table.pending("run-rollback").backup_id
        world.approve("run-rollback", f"RESTORE {backup_id}")
        described = world.wait(arn)
    finally:
        restore_workflow.RestoreWorkflow.restore = original  # type: ignore[method-assign]

    # then the execution ends rolled back, staging holds its pre-restore data, the lock is free
    assert described["status"] == "FAILED" and described["error"] == "RestoreRolledBack"
    assert table_rows(paths["staging"]) == before
    assert world.table.holder("orders", "staging") is None
    assert (world.table.audit("run-rollback") or {})["outcome"] == "rolled back"
    assert world.alerts(at_least=2)[-1]["message"]["event"] == "restore_failed"


def test_an_approval_that_times_out_leaves_the_target_untouched(paths: dict[str, Path]) -> None:
    for world in build_world(paths, timedelta(seconds=3)):
        before = table_rows(paths["staging"])
        described = world.wait(world.start(sample("latest-to-staging.json"), "run-timeout"))
        assert described["status"] == "FAILED"
        assert table_rows(paths["staging"]) == before
        assert world.table.holder("orders", "staging") is None
        assert "States.Timeout" in ((world.table.audit("run-timeout") or {}).get("failure_reason") or "")
