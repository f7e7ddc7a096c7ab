"""The restore state machine's steps: the names its Tasks send and the states that send them.

Every Task invokes a function with ``{"step": <step>, "execution": ...}``. The step guard
(``backstop.services.step_guard``) admits a step only when the execution's history shows it sent
from one of ``STEP_STATES[step]``, and ``finish`` only with its state's ``FINISH_OUTCOMES``;
``infra/restore_workflow.py`` builds its Tasks from the same names. A state or step renamed on one
side only fails synthesis or a test, instead of refusing every restore in AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class Step(StrEnum):
    """A restore step, as a Task's payload names it; the restore and approval functions run the step of this name."""

    RESOLVE = "resolve"
    IDENTIFY_REQUESTER = "identify_requester"
    VALIDATE_ARTIFACT = "validate_artifact"
    LOCK = "lock"
    PLAN = "plan"
    REQUEST_APPROVAL = "request_approval"
    CHECK_APPROVAL = "check_approval"
    SAFETY_SNAPSHOT = "safety_snapshot"
    RESTORE = "restore"
    VALIDATE_TARGET = "validate_target"
    ROLLBACK = "rollback"
    FINISH = "finish"


STEPS: tuple[Step, ...] = tuple(Step)
"""Every step, in the order a restore runs them."""

FINISH_OUTCOMES: Mapping[str, str] = {
    "FinishNotRestored": "not restored",
    "FinishRolledBack": "rolled back",
    "FinishRollbackFailed": "rollback failed",
    "FinishDryRun": "dry run",
    "FinishRestored": "restored",
}
"""Each state that sends ``finish``, and the one outcome it may finish with."""

STEP_STATES: Mapping[str, frozenset[str]] = {
    Step.RESOLVE: frozenset({"Resolve"}),
    Step.IDENTIFY_REQUESTER: frozenset({"IdentifyRequester"}),
    Step.VALIDATE_ARTIFACT: frozenset({"ValidateArtifact"}),
    Step.LOCK: frozenset({"Lock"}),
    Step.PLAN: frozenset({"Plan"}),
    Step.REQUEST_APPROVAL: frozenset({"Approval"}),
    Step.CHECK_APPROVAL: frozenset({"CheckApproval"}),
    Step.SAFETY_SNAPSHOT: frozenset({"SafetySnapshot"}),
    Step.RESTORE: frozenset({"Restore"}),
    Step.VALIDATE_TARGET: frozenset({"ValidateTarget"}),
    Step.ROLLBACK: frozenset({"Rollback"}),
    Step.FINISH: frozenset(FINISH_OUTCOMES),
}
"""The Task states each step may be sent from."""


def state_of(step: Step) -> str:
    """The one Task state that sends ``step`` (every step but ``finish``, which five states send)."""
    (state,) = STEP_STATES[step]
    return state
