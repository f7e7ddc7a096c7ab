"""Lambda entry point of the restore state machine's Tasks: one function, the step named in the payload.

Each Task passes ``{"step": <name>, ...}``: ``resolve`` gets the execution input and name,
``request_approval`` the task token, ``finish`` the outcome and the caught error, the others the
state the previous step returned. The step's exception propagates with its class name, which the
state machine's Catch and Retry clauses name.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.aws import build_notifier, build_store
from backstop.restore_table import build_restore_table
from backstop.services.restore_workflow import RestoreWorkflow
from backstop.workflow_settings import WorkflowSettings

logger = Logger(service="backstop-restore")
metrics = Metrics(namespace="Backstop", service="restore")

STEPS = (
    "resolve",
    "validate_artifact",
    "lock",
    "plan",
    "request_approval",
    "safety_snapshot",
    "restore",
    "validate_target",
    "rollback",
    "finish",
)


def _workflow() -> RestoreWorkflow:
    """The workflow of this environment, built once per container (and again if the environment changes)."""
    keys = ("BACKSTOP_CONFIG_JSON", "BACKSTOP_RESTORE_TABLE", "AWS_ENDPOINT_URL")
    return _workflow_for(tuple(os.environ.get(k) for k in keys))


@cache
def _workflow_for(_environment: tuple[str | None, ...]) -> RestoreWorkflow:
    settings = WorkflowSettings.from_env()
    config = settings.config()
    return RestoreWorkflow(
        config,
        build_store(config),
        build_restore_table(settings.restore_table),
        build_notifier(config),
    )


@logger.inject_lambda_context(log_event=False)  # the approval step's event holds the task token
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    step = event.get("step")
    if step not in STEPS:
        raise ValueError(f"Unknown restore step {step!r}; expected one of {', '.join(STEPS)}.")
    workflow = _workflow()
    logger.append_keys(step=step)
    if step == "resolve":
        state = workflow.resolve(event["input"], event["execution"])
        logger.info("restore requested", database=state["database"], target=state["target"])
        return state
    state = event["state"]
    logger.append_keys(database=state.get("database"), target=state.get("target"), execution=state.get("execution"))
    if step == "request_approval":
        workflow.request_approval(state, event["token"])
        return None
    if step == "finish":
        result = workflow.finish(state, event["outcome"], event.get("error"))
        metrics.add_dimension(name="database", value=state["database"])
        metrics.add_metric(
            name="RestoreFinished" if event["outcome"] == "restored" else "RestoreFailed",
            unit=MetricUnit.Count,
            value=1,
        )
        return result
    step_result: dict[str, Any] = getattr(workflow, step)(state)
    logger.info("restore step done", duration=step_result.get("timings", {}).get(step))
    return step_result
