"""The restore steps the functions run are the ones the state machine sends (tests/infra/test_restore_workflow.py
checks the synthesized side)."""

from __future__ import annotations

from backstop.handlers.restore import RESTORE_STEPS
from backstop.services import step_guard
from backstop.services.restore_workflow import RestoreWorkflow
from backstop.workflow_steps import FINISH_OUTCOMES, STEP_STATES, STEPS, Step


def test_the_restore_function_runs_every_step_but_identifying_the_requester_each_as_a_workflow_method() -> None:
    assert [step for step in STEPS if step not in RESTORE_STEPS] == [Step.IDENTIFY_REQUESTER]
    assert all(callable(getattr(RestoreWorkflow, step, None)) for step in RESTORE_STEPS)


def test_the_step_guard_admits_each_step_from_the_shared_states_only() -> None:
    assert step_guard.STEP_STATES is STEP_STATES and step_guard.FINISH_OUTCOMES is FINISH_OUTCOMES
    assert list(STEP_STATES) == list(STEPS)
    assert [step for step, states in STEP_STATES.items() if len(states) != 1] == [Step.FINISH]
    assert STEP_STATES[Step.FINISH] == set(FINISH_OUTCOMES)
