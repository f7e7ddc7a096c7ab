"""Step Functions: the restore state machine's executions, read (describe, history) and answered (task tokens).

What a step concludes from them is ``backstop.services.step_context``.
"""

from __future__ import annotations

import json
from typing import Any

from backstop.errors import UnauthorizedStepError


class StepFunctionsExecutions:
    """``DescribeExecution`` and the full ``GetExecutionHistory``, oldest event first."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def describe(self, execution_arn: str) -> dict[str, Any]:
        try:
            return dict(self._client.describe_execution(executionArn=execution_arn))
        except self._client.exceptions.ExecutionDoesNotExist:
            raise UnauthorizedStepError(f"There is no execution {execution_arn}.") from None
        except self._client.exceptions.InvalidArn:
            raise UnauthorizedStepError(f"{execution_arn[:200]!r} is not an execution ARN.") from None

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        pages = self._client.get_paginator("get_execution_history").paginate(executionArn=execution_arn)
        # Ordered by event id: not every implementation honours reverseOrder, and a restore's history is short.
        return sorted((e for page in pages for e in page["events"]), key=lambda e: int(e["id"]))

    def start(self, state_machine_arn: str, name: str, execution_input: dict[str, Any]) -> str:
        """Start an execution named ``name``; its ARN."""
        response = self._client.start_execution(
            stateMachineArn=state_machine_arn, name=name, input=json.dumps(execution_input)
        )
        return str(response["executionArn"])

    def send_success(self, token: str, output: dict[str, Any]) -> None:
        self._client.send_task_success(taskToken=token, output=json.dumps(output))

    def send_failure(self, token: str, error: str, cause: str) -> None:
        self._client.send_task_failure(taskToken=token, error=error, cause=cause)
