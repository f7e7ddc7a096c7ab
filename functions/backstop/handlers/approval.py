"""Lambda entry point of the approval component (``backstop.services.approval``).

Two callers: a person, through ``backstop approve`` / ``reject`` (``{"action": "approve"|"reject",
"execution", "phrase"|"reason", "identity": <signed GetCallerIdentity request>}``), and the
state machine's ``IdentifyRequester`` state (``{"step": "identify_requester", "execution": ...}``).
A refusal is an exception whose class name and one sentence reach the caller; nothing is changed.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backstop.bootstrap import approval_steps
from backstop.errors import RestoreError
from backstop.identity import IdentityProof
from backstop.observability import TRACED_MODULES, Service
from backstop.workflow_steps import Step

logger = Logger(service=Service.APPROVAL.log_name)
tracer = Tracer(service=Service.APPROVAL.log_name, patch_modules=TRACED_MODULES)


class ApprovalRequest(BaseModel):
    """What `backstop approve` and `backstop reject` send."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: str = Field(pattern="^(approve|reject)$")
    execution: str = Field(min_length=1, max_length=300)
    phrase: str = Field(default="", max_length=300)
    reason: str = Field(default="", max_length=1000)
    identity: IdentityProof


# The event holds identity proofs, the answer a grant's essentials: neither is logged nor traced.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    guard, service = approval_steps()
    if event.get("step") == Step.IDENTIFY_REQUESTER:
        admitted = guard.admit(Step.IDENTIFY_REQUESTER, event, function="approval")
        requester = service.identify_requester(admitted)
        logger.info("requester identified", execution=admitted.execution, verified=requester["verified"])
        return requester
    try:
        request = ApprovalRequest.model_validate(event)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "request"
        raise RestoreError(f"The approval request is invalid: {where}: {first['msg']}.") from None
    logger.append_keys(action=request.action, execution=request.execution)
    if request.action == "approve":
        grant = service.approve(request.execution, request.phrase, request.identity)
        logger.info("restore approved", approver=grant.claims.approver_arn, backup_id=grant.claims.backup_id)
        return {"approved": grant.essentials()}
    by = service.reject(request.execution, request.reason, request.identity)
    logger.info("restore rejected", by=by.arn)
    return {"rejected": {"execution": request.execution, "by": by.arn}}
