"""Admits a restore step only inside its own running execution; records and alerts every refusal.

The restore and approval functions can be invoked by anyone with ``lambda:InvokeFunction``, with any
payload. Before a step does anything, its context is proved against Step Functions
(``backstop.services.step_context.step_context``). A refusal changes nothing but two records: an audit record
of its own (never over a restore's) and an alert that says what was tried, against what.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from backstop.errors import UnauthorizedStepError
from backstop.ports import Clock, Executions, Notifier, RestoreLedger
from backstop.services.step_context import StepContext, step_context
from backstop.workflow_steps import FINISH_OUTCOMES, STEP_STATES

log = logging.getLogger(__name__)

REFUSED_STEP = "refused: no valid approval"


class StepGuard:
    """Proves a step's context, or refuses it with an audit record and an alert."""

    def __init__(
        self,
        executions: Executions,
        state_machine_arn: str,
        table: RestoreLedger,
        notifier: Notifier,
        *,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._executions = executions
        self._machine = state_machine_arn
        self._table = table
        self._notifier = notifier
        self._clock = clock

    def admit(self, step: str, event: dict[str, Any], *, function: str) -> StepContext:
        """The verified context of ``step`` invoked with ``event``; UnauthorizedStepError after recording why not."""
        try:
            context = step_context(
                self._executions, self._machine, event.get("execution"), set(STEP_STATES[step]), event
            )
            if step == "finish" and event.get("outcome") != FINISH_OUTCOMES[context.state]:
                raise UnauthorizedStepError(
                    f"{context.state} finishes as {FINISH_OUTCOMES[context.state]!r}, not {event.get('outcome')!r}."
                )
            return context
        except UnauthorizedStepError as exc:
            self._refuse(step, event, str(exc), function)
            raise

    def _refuse(self, step: str, event: dict[str, Any], reason: str, function: str) -> None:
        state = event.get("state")
        state = state if isinstance(state, dict) else {}
        backup = state.get("backup")
        claimed = {
            "claimed_execution": str(event.get("execution"))[:300],
            "database": str(state.get("database"))[:100],
            "target": str(state.get("target"))[:100],
            "backup_id": str(backup.get("backup_id") if isinstance(backup, dict) else None)[:200],
        }
        refusal = self._table.record_refusal(
            {**claimed, "step": step, "function": function, "outcome": REFUSED_STEP, "failure_reason": reason[:500]},
            self._clock(),
        )
        log.error("refused %s step %s: %s", function, step, reason)
        self._notifier.publish(
            f"Backstop: refused a {step} step invoked outside its execution",
            {
                "event": "restore_step_refused",
                "refusal": refusal,
                "step": step,
                "function": function,
                **claimed,
                "reason": reason,
                "what_to_do": "Someone invoked a Backstop function directly or replayed a payload; "
                "nothing was changed. CloudTrail's Lambda data events (Invoke) for this function say who, "
                "where a trail records them.",
            },
        )
