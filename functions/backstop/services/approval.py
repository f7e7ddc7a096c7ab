"""The approval component: the one place a restore approval can be made (THREATS.md, "approval component").

It runs as its own function with its own role, the only role the approval key lets ``GenerateMac``.
A person approves by invoking it (``backstop approve``) with the phrase and a signed
GetCallerIdentity request; it never trusts what the caller says about the restore:

1. the execution must be RUNNING on this stack's restore state machine and waiting in ``Approval``;
   the plan, the pinned backup, the requester and the task token are read from what Step Functions
   itself recorded for that state, not from the caller;
2. STS says who signed the proof (the approver), which was signed for exactly this action and execution;
3. the phrase must be ``RESTORE <backup_id>`` of the planned backup; the approver must match
   ``restore.approvers`` when it is set; with ``distinct_approver`` the requester must be verified
   and a different principal;
4. a grant bound to the execution, database, target, backup id, SHA-256, S3 versions and both
   principals is sealed with the approval key and handed to the execution as the task's output.

The restore function checks that grant after the wait and again in every destructive step.
``identify_requester`` runs as a state of the workflow: it checks the proof a requester put in the
execution input (or records the requester as unverified).
"""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime
from typing import Any

from backstop.errors import IdentityProofError, RestoreError
from backstop.grants import Grant, GrantClaims, GrantSigner, seal
from backstop.identity import IdentityProof, Principal, intent, unverified
from backstop.ports import Clock, Executions, IdentityVerifier, Notifier, RestoreLedger
from backstop.services.restore_workflow import (
    GRANT_LIFETIME,
    RestoreRejectedError,
    SameApproverError,
    WrongConfirmationError,
    confirmation_phrase,
)
from backstop.services.step_context import StepContext, execution_arn_of, step_context

APPROVAL_STATE = "Approval"


class ApproverNotAllowedError(RestoreError):
    """The deployment names who may approve (``restore.approvers``), and the verified caller is not one of them."""


class UnverifiedRequesterError(RestoreError):
    """Four eyes are required and the requester's identity was never verified (a console start)."""


class ApprovalService:
    """Approves, rejects, and identifies requesters of restores; the only producer of approval grants."""

    def __init__(
        self,
        *,
        executions: Executions,
        state_machine_arn: str,
        verifier: IdentityVerifier,
        signer: GrantSigner,
        table: RestoreLedger,
        notifier: Notifier,
        distinct_approver: bool,
        approvers: tuple[str, ...] = (),
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        self._executions = executions
        self._machine = state_machine_arn
        self._verifier = verifier
        self._signer = signer
        self._table = table
        self._notifier = notifier
        self._distinct = distinct_approver
        self._approvers = approvers
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock().astimezone(UTC)

    def _arn(self, execution: str) -> str:
        return execution if execution.startswith("arn:") else execution_arn_of(self._machine, execution)

    def _waiting(self, execution: str) -> StepContext:
        return step_context(self._executions, self._machine, self._arn(execution), {APPROVAL_STATE}, None)

    def identify_requester(self, context: StepContext) -> dict[str, Any]:
        """The requester as AWS knows them (from the proof in the execution input), or marked unverified.

        Runs as the ``IdentifyRequester`` state (its context proved by the step guard); the proof is read
        from the execution's own input. A proof that does not verify fails the state: a forged identity
        never gets a restore as far as a plan.
        """
        raw = context.input.get("identity")
        claimed = str(context.input.get("requested_by", ""))[:200]
        if raw is None:
            record = unverified(claimed)
        else:
            proof = IdentityProof.model_validate(raw)
            principal = self._verifier.verify(
                proof, intent("request", context.execution_arn), self._now(), not_before=context.started
            )
            record = {**principal.record(), "claimed": claimed}
        self._table.update_audit(context.execution, {"requester": record})
        return record

    def approve(self, execution: str, phrase: str, proof: IdentityProof) -> Grant:
        """Check everything, seal a grant, complete the approval wait with it; the grant (see module doc)."""
        context = self._waiting(execution)
        approver = self._verifier.verify(
            proof, intent("approve", context.execution_arn), self._now(), not_before=context.started
        )
        state: dict[str, Any] = context.payload["state"]
        plan = state["plan"]
        expected = confirmation_phrase(plan["backup_id"])
        if phrase.strip() != expected:
            raise WrongConfirmationError(
                f"The confirmation phrase does not match: type exactly {expected!r}; the restore stays pending."
            )
        self._check_allowed(context, approver)
        requester = state.get("requester") or unverified(str(state.get("requested_by", "")))
        self._check_four_eyes(context, requester, approver)
        now = self._now()
        pinned = state["backup"]
        grant = seal(
            GrantClaims(
                execution=context.execution_arn,
                database=state["database"],
                target=state["target"],
                backup_id=pinned["backup_id"],
                sha256=pinned["sha256"],
                object_version=pinned.get("object_version"),
                manifest_version=pinned.get("manifest_version"),
                approver=approver.key,
                approver_arn=approver.arn,
                requester=requester.get("principal"),
                approved_at=now,
                expires_at=now + GRANT_LIFETIME,
            ),
            self._signer,
        )
        self._table.take_approval(context.execution)
        self._table.update_audit(context.execution, {"grant": grant.essentials()})
        self._executions.send_success(context.payload["token"], {"grant": grant.model_dump(mode="json")})
        return grant

    def reject(self, execution: str, reason: str, proof: IdentityProof) -> Principal:
        """Fail the approval wait with RestoreRejectedError under the verified identity of who rejected.

        With ``restore.approvers`` set, only an approver or the verified requester may reject.
        """
        context = self._waiting(execution)
        by = self._verifier.verify(
            proof, intent("reject", context.execution_arn), self._now(), not_before=context.started
        )
        requester = context.payload["state"].get("requester") or {}
        if requester.get("principal") != by.key:  # a requester may always withdraw their own request
            self._check_allowed(context, by)
        self._table.take_approval(context.execution)
        self._table.update_audit(
            context.execution,
            {"rejected_by": by.arn, "rejected_by_principal": by.key, "rejection_reason": reason[:500]},
        )
        self._executions.send_failure(
            context.payload["token"], RestoreRejectedError.__name__, f"Rejected by {by.arn}: {reason[:200]}"
        )
        return by

    def _check_allowed(self, context: StepContext, approver: Principal) -> None:
        if self._approvers and not any(fnmatch.fnmatchcase(approver.arn, p) for p in self._approvers):
            self._alert(context, approver, "the caller is not one of the configured approvers")
            raise ApproverNotAllowedError(
                f"{approver.arn} is not one of this deployment's approvers (restore.approvers); ask one of them."
            )

    def _check_four_eyes(self, context: StepContext, requester: dict[str, Any], approver: Principal) -> None:
        if not self._distinct:
            return
        if not requester.get("verified"):
            self._alert(context, approver, "the requester's identity was never verified")
            raise UnverifiedRequesterError(
                f"{context.execution} was started without a verified requester (from the console?), and four eyes "
                "are required: start it again with `backstop restore-request`, so AWS can tell requester and "
                "approver apart."
            )
        if requester.get("principal") == approver.key:
            self._alert(context, approver, "the requester tried to approve their own restore")
            raise SameApproverError(
                f"{approver.arn} is the principal that requested this restore ({approver.key}) and cannot approve it; "
                "another person must."
            )

    def _alert(self, context: StepContext, who: Principal, what: str) -> None:
        state = context.payload.get("state", {})
        self._notifier.publish(
            f"Backstop: approval of {context.execution} refused",
            {
                "event": "restore_approval_refused",
                "execution": context.execution,
                "database": state.get("database"),
                "target": state.get("target"),
                "tried_by": who.arn,
                "reason": what,
            },
        )


__all__ = ["ApprovalService", "ApproverNotAllowedError", "IdentityProofError", "UnverifiedRequesterError"]
