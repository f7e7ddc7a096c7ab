"""Lambda entry point of the restore state machine's Tasks: one function, the step named in the payload.

Each Task passes ``{"step": <name>, "execution": <execution ARN>, ...}``: ``resolve`` gets the
execution input, ``finish`` the outcome and the caught error, the others the state the previous
step returned. Before any step runs, the step guard proves it was sent by its own running
execution, in the state that runs it (a direct invoke changes nothing). The step's exception
propagates with its class name, which the state machine's Catch and Retry clauses name.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from backstop.bootstrap import restore_steps
from backstop.deadline import Deadline
from backstop.observability import NAMESPACE, TRACED_MODULES, Metric, Service
from backstop.workflow_steps import STEPS, Step

logger = Logger(service=Service.RESTORE.log_name)
metrics = Metrics(namespace=NAMESPACE, service=Service.RESTORE)
tracer = Tracer(service=Service.RESTORE.log_name, patch_modules=TRACED_MODULES)

RESTORE_STEPS = tuple(step for step in STEPS if step is not Step.IDENTIFY_REQUESTER)
"""The steps this function runs (the approval function identifies the requester)."""
REMEDY = "restore a backup this large with `backstop restore` from a machine, where no 15-minute limit applies"


# The approval step's event holds the task token, a state holds the approval grant: neither is logged nor traced.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any] | None:
    deadline = Deadline(context.get_remaining_time_in_millis, remedy=REMEDY)
    step = event.get("step")
    if step not in RESTORE_STEPS:
        raise ValueError(f"Unknown restore step {step!r}; expected one of {', '.join(RESTORE_STEPS)}.")
    guard, built = restore_steps()
    workflow = built.within(deadline)
    logger.append_keys(step=step)
    admitted = guard.admit(step, event, function="restore")
    if step == Step.RESOLVE:
        state = workflow.resolve(admitted.input, admitted.execution)
        logger.info("restore requested", database=state["database"], target=state["target"])
        return state
    # The execution is the one the guard proved (Resolve may have failed before naming it in the state).
    state = {**event["state"], "execution": admitted.execution}
    logger.append_keys(database=state.get("database"), target=state.get("target"), execution=state.get("execution"))
    if step == Step.REQUEST_APPROVAL:
        workflow.request_approval(state)
        return None
    if step == Step.FINISH:
        result = workflow.finish(state, event["outcome"], event.get("error"))
        metrics.add_dimension(name="database", value=str(state.get("database")))
        metrics.add_metric(
            name=Metric.RESTORE_FINISHED if event["outcome"] == "restored" else Metric.RESTORE_FAILED,
            unit=MetricUnit.Count,
            value=1,
        )
        return result
    step_result: dict[str, Any] = getattr(workflow, step)(state)
    logger.info("restore step done", duration=step_result.get("timings", {}).get(step))
    return step_result
