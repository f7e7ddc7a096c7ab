"""The emulator runs real handlers in-process, for boto3 calls and for state machines moto executes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local.emulator import Emulator, running
from local.lambdas import in_process_lambdas

pytestmark = pytest.mark.xdist_group("emulator")


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    saved = os.environ.get("MOTO_PORT")
    with running() as emu:
        emu.execute_workflows()
        yield emu
    if saved is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = saved


def create_function(emulator: Emulator, name: str, handler: str) -> str:
    role = emulator.client("iam").create_role(RoleName=f"{name}-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    response = emulator.client("lambda").create_function(
        FunctionName=name,
        Role=role,
        PackageType="Image",
        Code={"ImageUri": "backstop/runner:local"},
        ImageConfig={"Command": [handler]},
        Environment={"Variables": {"SAMPLE_VAR": f"{name}-value"}},
        Timeout=30,
    )
    return str(response["FunctionArn"])


def wait(sfn: Any, execution: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.1)
    pytest.fail(f"{execution} still running after {timeout} s")


def test_an_invocation_runs_the_image_commands_handler_with_its_environment(emulator: Emulator) -> None:
    create_function(emulator, "echo", "tests.e2e.sample_handlers.echo")
    with in_process_lambdas() as calls:
        response = emulator.client("lambda").invoke(FunctionName="echo", Payload=json.dumps({"a": 1}))
    result = json.loads(response["Payload"].read())
    assert result["event"] == {"a": 1} and result["env"] == "echo-value" and result["function"] == "echo"
    assert 0 < result["remaining_ms"] <= 30_000
    assert [c.handler for c in calls.calls] == ["tests.e2e.sample_handlers.echo"]
    assert "SAMPLE_VAR" not in os.environ


def test_an_exception_reaches_a_state_machine_as_its_class_name(emulator: Emulator) -> None:
    # given a state machine whose second task waits for a token and whose third raises TargetLockedError
    echo = create_function(emulator, "echo", "tests.e2e.sample_handlers.echo")
    locked = create_function(emulator, "locked", "tests.e2e.sample_handlers.locked")
    definition = {
        "StartAt": "Echo",
        "States": {
            "Echo": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": echo, "Payload.$": "$"},
                "OutputPath": "$.Payload",
                "TimeoutSeconds": 30,
                "Next": "Approve",
            },
            "Approve": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke.waitForTaskToken",
                "Parameters": {"FunctionName": echo, "Payload": {"token.$": "$$.Task.Token"}},
                "TimeoutSeconds": 30,
                "Next": "Lock",
            },
            "Lock": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": locked, "Payload.$": "$"},
                "TimeoutSeconds": 30,
                "Catch": [{"ErrorEquals": ["TargetLockedError"], "ResultPath": "$.error", "Next": "Refused"}],
                "End": True,
            },
            "Refused": {"Type": "Fail", "Error": "Refused", "Cause": "locked"},
        },
    }
    sfn = emulator.client("stepfunctions")
    role = emulator.client("iam").create_role(RoleName="sm", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    machine = sfn.create_state_machine(name="sample", definition=json.dumps(definition), roleArn=role)
    with in_process_lambdas() as calls:
        execution = sfn.start_execution(stateMachineArn=machine["stateMachineArn"], name="run-1", input="{}")
        deadline = time.monotonic() + 30
        while not any("token" in c.event for c in calls.calls) and time.monotonic() < deadline:
            time.sleep(0.05)
        token = next(c.event["token"] for c in calls.calls if "token" in c.event)
        sfn.send_task_success(taskToken=token, output=json.dumps({"approved_by": "bob"}))
        described = wait(sfn, execution["executionArn"])

    # then the Catch on the exception's class name routed it
    assert described["status"] == "FAILED" and described["error"] == "Refused"
    assert [c.error for c in calls.calls] == [None, None, "TargetLockedError"]
    assert calls.calls[2].event == {"approved_by": "bob"}
