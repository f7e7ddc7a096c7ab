"""Where a restore step stands, as Step Functions records it: the only context a step trusts.

Lambda does not tell a function who invoked it, so a restore step cannot tell the state machine
from a person with ``lambda:InvokeFunction``. It asks Step Functions instead: the execution its
payload names must be RUNNING on this stack's restore state machine, the state it is in right now
must be the one that runs this step, and the payload Step Functions scheduled for that state must
be exactly the payload received. A hand-made payload, or one replayed from a finished or another
execution, fails one of the three, and the step changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from backstop.errors import UnauthorizedStepError
from backstop.ports import Executions


@dataclass(frozen=True)
class StepContext:
    """A verified step: its execution, the state it runs in, what Step Functions sent, and the execution input."""

    execution_arn: str
    execution: str
    state: str
    payload: Any
    input: dict[str, Any]
    started: datetime


def execution_arn_of(state_machine_arn: str, name: str) -> str:
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"


def _scheduled_payload(event: dict[str, Any]) -> tuple[bool, Any]:
    """(True, payload) for an event that schedules a Lambda invocation, in either form Step Functions records."""
    if "lambdaFunctionScheduledEventDetails" in event:
        return True, json.loads(event["lambdaFunctionScheduledEventDetails"].get("input") or "null")
    if "taskScheduledEventDetails" in event:
        parameters = json.loads(event["taskScheduledEventDetails"].get("parameters") or "{}")
        return True, parameters.get("Payload")
    return False, None


def step_context(
    executions: Executions, state_machine_arn: str, execution_arn: Any, states: set[str], received: Any
) -> StepContext:
    """The context of a step invoked with ``received`` for ``execution_arn``; UnauthorizedStepError otherwise.

    ``states`` are the names of the states that run this step. With ``received`` None the payload
    is not compared (the approval component, called by a person, reads the payload instead).
    """
    prefix = state_machine_arn.replace(":stateMachine:", ":execution:", 1) + ":"
    if not isinstance(execution_arn, str) or not execution_arn.startswith(prefix):
        shown = str(execution_arn)[:200]
        raise UnauthorizedStepError(f"{shown!r} is not an execution of this stack's restore state machine.")
    described = executions.describe(execution_arn)
    if described.get("stateMachineArn") != state_machine_arn:
        raise UnauthorizedStepError(f"{execution_arn} is not an execution of this stack's restore state machine.")
    if described.get("status") != "RUNNING":
        raise UnauthorizedStepError(f"Execution {execution_arn} is {described.get('status')}, not running.")
    events = executions.history(execution_arn)
    entered = [e for e in events if "stateEnteredEventDetails" in e]
    current = entered[-1]["stateEnteredEventDetails"]["name"] if entered else None
    if current not in states:
        raise UnauthorizedStepError(
            f"Execution {execution_arn} is in state {current}, not {' or '.join(sorted(states))}."
        )
    since = int(entered[-1]["id"])
    scheduled = [p for e in events if int(e["id"]) > since for found, p in [_scheduled_payload(e)] if found]
    if not scheduled:
        raise UnauthorizedStepError(f"Execution {execution_arn} has not scheduled {current} yet.")
    payload = scheduled[-1]
    if received is not None and payload != received:
        raise UnauthorizedStepError(
            f"The payload is not the one execution {execution_arn} sent to {current}: a direct invoke or a replay."
        )
    return StepContext(
        execution_arn=execution_arn,
        execution=execution_arn.rsplit(":", 1)[-1],
        state=str(current),
        payload=payload,
        input=json.loads(described.get("input") or "{}"),
        started=described["startDate"],
    )
