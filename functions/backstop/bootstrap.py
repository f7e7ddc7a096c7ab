"""The composition root: builds the real adapters from the configuration, lazily, never at import time.

boto3 reads the standard environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, credentials), so the
same code talks to AWS and to the embedded emulator.
"""

from __future__ import annotations

import os
from functools import cache
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config as BotoConfig

from backstop.adapters.lambda_functions import ApprovalComponent
from backstop.adapters.parameter_store import ParameterCatalog
from backstop.adapters.restore_table import RestoreTable, build_restore_table
from backstop.adapters.s3_store import MIB, S3Store
from backstop.adapters.sns import SnsNotifier
from backstop.adapters.step_functions import StepFunctionsExecutions
from backstop.adapters.sts import StsIdentityVerifier, caller_arn, sign_proof, sts_endpoint
from backstop.config import Config, Upload
from backstop.config.environment import AlertSettings, CatalogSettings, FunctionSettings
from backstop.config.workflow_environment import ApprovalSettings, WorkflowSettings
from backstop.errors import ConfigError
from backstop.grants import KmsGrantSigner
from backstop.identity import IdentityProof, Intent
from backstop.ports import NoNotifier, Notifier

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient

    from backstop.services.approval import ApprovalService
    from backstop.services.restore_workflow import RestoreWorkflow
    from backstop.services.step_guard import StepGuard

# Standard retry mode retries throttling, 5xx and dropped connections with back-off before any
# error reaches Backstop; an upload that still fails is aborted.
_BOTO = BotoConfig(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=10,
    read_timeout=120,
    max_pool_connections=32,
)


def s3_client(region: str | None = None) -> S3Client:
    return boto3.client("s3", config=_BOTO, region_name=region)


def ssm_client() -> SSMClient:
    return boto3.client("ssm", config=_BOTO)


def build_catalog(settings: CatalogSettings | WorkflowSettings) -> ParameterCatalog:
    """The database catalog the function was deployed with (``BACKSTOP_CATALOG``, checked against its digest)."""
    return ParameterCatalog(ssm_client(), settings.catalog, settings.catalog_digest)


def build_replica_store(config: Config | FunctionSettings, client: S3Client | None = None) -> S3Store:
    """The store of the vault's replica (``storage.replica``, or a function's ``BACKSTOP_REPLICA_*``), read-only
    by policy, in the replica's region."""
    replica = config.storage.replica if isinstance(config, Config) else config.replica
    if replica is None:
        raise ConfigError(f"s3://{config.bucket} has no replica configured (storage.replica in backstop.yaml).")
    return S3Store(
        client or s3_client(replica.region),
        bucket=replica.bucket,
        prefix=config.prefix,
        replica_of=config.bucket,
    )


def build_store(config: Config | FunctionSettings, client: S3Client | None = None) -> S3Store:
    """The S3 store of ``config`` (or of a function's environment, with the default upload tuning)."""
    upload = config.upload if isinstance(config, Config) else Upload()
    return S3Store(
        client or s3_client(),
        bucket=config.bucket,
        prefix=config.prefix,
        kms_key_id=config.kms_key_id,
        part_size=upload.part_size_mb * MIB,
        concurrency=upload.concurrency,
    )


def build_notifier(config: Config | FunctionSettings | ApprovalSettings) -> Notifier:
    """SNS when ``alerts_topic_arn`` is configured, else nothing (the caller reports failures itself)."""
    if config.alerts_topic_arn is None:
        return NoNotifier()
    return SnsNotifier(boto3.client("sns", config=_BOTO), config.alerts_topic_arn)


def build_alert_notifier(settings: AlertSettings) -> Notifier:
    """SNS that raises when a publish fails, for the function whose only job is to deliver alerts."""
    return SnsNotifier(boto3.client("sns", config=_BOTO), settings.alerts_topic_arn, strict=True)


def executions() -> StepFunctionsExecutions:
    """The restore state machine's executions, with this machine's (or function's) credentials."""
    return StepFunctionsExecutions(boto3.client("stepfunctions", config=_BOTO))


def restore_ledger(table: str) -> RestoreTable:
    """The restore table: locks, pending approvals and the audit trail."""
    return build_restore_table(table)


def approval_component(function: str) -> ApprovalComponent:
    return ApprovalComponent(boto3.client("lambda", config=_BOTO), function)


def caller() -> str:
    """Who is acting, as AWS knows them (the requester or approver recorded in the audit trail)."""
    return caller_arn(boto3.client("sts", config=_BOTO))


def identity_proof(action: Intent, execution_arn: str) -> IdentityProof:
    """A signed (not sent) GetCallerIdentity request bound to ``action`` on ``execution_arn``."""
    return sign_proof(action, execution_arn)


def _environment_key(settings: type[WorkflowSettings] | type[ApprovalSettings]) -> tuple[str | None, ...]:
    keys = [f"BACKSTOP_{name.upper()}" for name in settings.model_fields] + ["AWS_ENDPOINT_URL"]
    return tuple(os.environ.get(k) for k in keys)


def restore_steps() -> tuple[StepGuard, RestoreWorkflow]:
    """The restore function's step guard and workflow, built once per container (again if its environment
    changes, as it does between the tests that deploy it)."""
    return _restore_steps(_environment_key(WorkflowSettings))


@cache
def _restore_steps(_environment: tuple[str | None, ...]) -> tuple[StepGuard, RestoreWorkflow]:
    from backstop.services.restore_workflow import RestoreWorkflow  # only the restore function needs it
    from backstop.services.step_guard import StepGuard

    settings = WorkflowSettings.from_env()
    config = settings.config(build_catalog(settings).read())
    table = build_restore_table(settings.restore_table)
    notifier = build_notifier(config)
    workflow = RestoreWorkflow(
        config,
        build_store(config),
        table,
        notifier,
        grants=KmsGrantSigner(boto3.client("kms", config=_BOTO), settings.approval_key_arn),
        state_machine_arn=settings.state_machine_arn,
    )
    return StepGuard(executions(), settings.state_machine_arn, table, notifier), workflow


def approval_steps() -> tuple[StepGuard, ApprovalService]:
    """The approval function's step guard and approval component, built once per container."""
    return _approval_steps(_environment_key(ApprovalSettings))


@cache
def _approval_steps(_environment: tuple[str | None, ...]) -> tuple[StepGuard, ApprovalService]:
    from backstop.services.approval import ApprovalService  # only the approval function needs it
    from backstop.services.step_guard import StepGuard

    settings = ApprovalSettings.from_env()
    table = build_restore_table(settings.restore_table)
    notifier = build_notifier(settings)
    steps = executions()
    service = ApprovalService(
        executions=steps,
        state_machine_arn=settings.state_machine_arn,
        verifier=StsIdentityVerifier(sts_endpoint(settings.region), settings.account),
        signer=KmsGrantSigner(boto3.client("kms", config=_BOTO), settings.approval_key_arn),
        table=table,
        notifier=notifier,
        distinct_approver=settings.distinct_approver,
        approvers=settings.approvers,
    )
    return StepGuard(steps, settings.state_machine_arn, table, notifier), service


def clear_cache() -> None:
    """Forget the built restore and approval components (tests deploy several stacks in one process)."""
    _restore_steps.cache_clear()
    _approval_steps.cache_clear()
