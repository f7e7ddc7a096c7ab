"""Lambda entry point of the approval component (``backstop.services.approval``).

Two callers: a person, through ``backstop approve`` / ``reject`` (``{"action": "approve"|"reject",
"execution", "phrase"|"reason", "identity": <signed GetCallerIdentity request>}``), and the
state machine's ``IdentifyRequester`` state (``{"step": "identify_requester", "execution": ...}``).
A refusal is an exception whose class name and one sentence reach the caller; nothing is changed.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backstop.adapters.restore_table import build_restore_table
from backstop.adapters.step_functions import StepFunctionsExecutions
from backstop.adapters.sts import StsIdentityVerifier, sts_endpoint
from backstop.bootstrap import build_notifier
from backstop.config.workflow_environment import ApprovalSettings
from backstop.errors import RestoreError
from backstop.grants import KmsGrantSigner
from backstop.identity import IdentityProof
from backstop.observability import TRACED_MODULES, Service
from backstop.services.approval import ApprovalService
from backstop.services.step_guard import StepGuard
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


def _built() -> tuple[StepGuard, ApprovalService]:
    keys = [f"BACKSTOP_{name.upper()}" for name in ApprovalSettings.model_fields] + ["AWS_ENDPOINT_URL"]
    return _built_for(tuple(os.environ.get(k) for k in keys))


@cache
def _built_for(_environment: tuple[str | None, ...]) -> tuple[StepGuard, ApprovalService]:
    settings = ApprovalSettings.from_env()
    table = build_restore_table(settings.restore_table)
    notifier = build_notifier(settings)
    executions = StepFunctionsExecutions(boto3.client("stepfunctions"))
    service = ApprovalService(
        executions=executions,
        state_machine_arn=settings.state_machine_arn,
        verifier=StsIdentityVerifier(sts_endpoint(settings.region), settings.account),
        signer=KmsGrantSigner(boto3.client("kms"), settings.approval_key_arn),
        table=table,
        notifier=notifier,
        distinct_approver=settings.distinct_approver,
        approvers=settings.approvers,
    )
    return StepGuard(executions, settings.state_machine_arn, table, notifier), service


# The event holds identity proofs, the answer a grant's essentials: neither is logged nor traced.
@logger.inject_lambda_context(log_event=False, clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    guard, service = _built()
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
