"""The restore workflow: a Step Functions state machine, its function, and the restore table.

States, in order (DESIGN.md "Restore workflow"), each a Task with a timeout and explicit retries
of Lambda's own transient errors; IdentifyRequester is the approval function's, every other Task
the restore function's:

    Resolve -> IdentifyRequester -> ValidateArtifact -> Lock -> Plan -> DryRun? -> Approval (task
    token, timeout) -> CheckApproval -> SafetySnapshot -> Restore -> ValidateTarget -> Finish
    (release lock, audit, notify)

A failure before the safety snapshot ends in ``FinishNotRestored`` (the target untouched, the lock
released, audited, alerted). A failure of ``Restore`` or ``ValidateTarget`` goes to ``Rollback``,
which restores the safety snapshot and validates it; if the rollback fails, ``FinishRollbackFailed``
keeps the lock and alerts that a person is needed, and the execution fails as ``RollbackFailed``.

Every payload names its execution (``$$.Execution.Id``), which each step proves against the
execution's own history before acting. The task token is kept nowhere and authorizes nothing:
CheckApproval passes only a grant sealed with the approval key, which only the approval role may
seal (kms:GenerateMac) and only the restore role may check (kms:VerifyMac). The state machine logs
without execution data.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from aws_cdk import Acknowledgment, ArnFormat, Aws, CfnElement, CfnResource, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct, IConstruct

from backstop.adapters.restore_table import KIND_INDEX
from backstop.config import Config, FilesDatabase, ServerDatabase, SqliteDatabase
from backstop.config.targets import IN_PLACE, resolve_target, safety_database
from backstop.errors import BackupAlreadyRunningError
from backstop.observability import NAMESPACE, Service
from backstop.workflow_steps import FINISH_OUTCOMES, Step, state_of
from infra.backup_vault import BackupVault, writer_role_path
from infra.catalog import DatabaseCatalog
from infra.network import grant_network
from infra.runner import LOG_RETENTION, FunctionSpec, RunnerImage
from infra.scheduled_backups import DeploymentConfigError

RESTORE_HANDLER = "backstop.handlers.restore.handler"
APPROVAL_HANDLER = "backstop.handlers.approval.handler"
CDK_EXECUTION_ROLES = "role/cdk-*-cfn-exec-role-*"
"""The CloudFormation execution roles of `cdk bootstrap`: the only principals that may change the approval key."""
EXECUTIONS_FINDING = (
    "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:"
    "execution:<AWS::StackName>-restore:*]"
)
EXECUTIONS_REASON = (
    "Execution names are chosen when a restore starts; the grant stops at this state machine's executions."
)
KEY_READS = ["kms:DescribeKey", "kms:GetKeyPolicy", "kms:GetKeyRotationStatus", "kms:ListResourceTags"]
KEY_MANAGEMENT = [
    "kms:PutKeyPolicy",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateKeyDescription",
    "kms:EnableKey",
    "kms:DisableKey",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
]
APPROVAL_LEADING_KEYS = ["restore#*", "refusal#*"]
"""The restore table's partition keys the approval component reads and writes: never ``lock#...``."""
STEP_TIMEOUT = Duration.minutes(15)
"""Every Task but the approval: the Lambda limit, since a restore streams the whole backup."""

LAMBDA_TRANSIENT = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
SOURCE_BACKUP_WAITS = 4
"""Retries of an in-place safety snapshot while a backup of the source runs: 1+2+4+8 = 15 minutes."""
EXECUTION_MARGIN = timedelta(hours=12)
"""The execution's limit beyond the approval wait: validation, snapshot, restore and rollback."""


def restore_problems(config: Config, *, emulated: bool = False) -> list[str]:
    """What stops the one restore function from reaching every declared target, one sentence each.

    ``emulated``: the function runs on this machine, where local paths and variables are reachable.
    """
    problems = []
    restorable = [db for db in config.databases if db.restore_targets]
    networks = {db.vpc for db in restorable if db.vpc is not None}
    if len(networks) > 1:
        names = ", ".join(db.name for db in restorable if db.vpc is not None)
        problems.append(
            f"the restorable databases {names} are in different VPC settings, and the restore function runs in "
            "one: give them the same vpc (subnets that reach every target)"
        )
    mounts = {db.efs for db in restorable if isinstance(db, SqliteDatabase | FilesDatabase) and db.efs is not None}
    if len(mounts) > 1:
        problems.append(
            "the restorable file databases use different EFS access points; the restore function mounts one"
        )
    for index, db in enumerate(config.databases):
        for name, overrides in db.restore_targets.items():
            target = resolve_target(db, name, overrides)
            where = f"databases[{index}] ({db.name}) restore target {name}"
            if emulated:
                continue
            if isinstance(target, ServerDatabase) and target.password_env is not None:
                problems.append(f"{where}: password_env is not set in a deployed function: use password_secret")
    return problems


class RestoreWorkflow(Construct):
    """The restore state machine of every database that declares restore targets."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vault: BackupVault,
        runner: RunnerImage,
        grant_publish: Callable[[iam.IRole], None],
        alerts_topic_arn: str,
        catalog: DatabaseCatalog,
        emulated: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        problems = restore_problems(config, emulated=emulated)
        if problems:
            raise DeploymentConfigError("The restore workflow cannot be deployed: " + "; ".join(problems) + ".")
        self.approval_timeout = config.restore.approval_timeout
        self._log_retention_days = config.runner.log_retention_days
        self.table = dynamodb.Table(
            self,
            "Table",
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            time_to_live_attribute="ttl",
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        self.table.add_global_secondary_index(
            index_name=KIND_INDEX,
            partition_key=dynamodb.Attribute(name="kind", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="started_at", type=dynamodb.AttributeType.STRING),
        )

        restorable = [db for db in config.databases if db.restore_targets]
        self.state_machine_name = f"{Aws.STACK_NAME}-restore"
        stack = Stack.of(self)
        self.state_machine_arn = stack.format_arn(
            service="states",
            resource="stateMachine",
            resource_name=self.state_machine_name,
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.executions_arn = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{self.state_machine_name}:*",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            path=writer_role_path(self),
            description="Backstop restore function: reads backups, writes safety snapshots, locks and audits",
        )
        self._grant_vault(vault, config, restorable)
        self.table.grant_read_write_data(self.role)
        self._acknowledge_table_index(self.role)
        grant_publish(self.role)
        self._grant_read_executions(self.role)
        self.approval_role = iam.Role(
            self,
            "ApprovalRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Backstop approval component: checks identities and phrases, seals approval grants",
        )
        self._grant_read_executions(self.approval_role)
        self.approval_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="AnswerTheApprovalWait",
                actions=["states:SendTaskSuccess", "states:SendTaskFailure"],
                resources=["*"],  # these actions take no resource: the task token names the execution
            )
        )
        Validations.of(self.approval_role.node.find_child("DefaultPolicy")).acknowledge(
            Acknowledgment(
                id="AwsSolutions-IAM5[Resource::*]",
                reason="states:SendTaskSuccess and SendTaskFailure take no resource (the task token names the "
                "execution); a token authorizes nothing, the restore function acts only on a sealed approval grant.",
            )
        )
        self.approval_role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ApprovalsAndAudit",
                actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"],
                resources=[self.table.table_arn],
                # a restore's approval and audit records, and refusals (backstop.adapters.restore_table): never a lock
                conditions={"ForAllValues:StringLike": {"dynamodb:LeadingKeys": APPROVAL_LEADING_KEYS}},
            )
        )
        grant_publish(self.approval_role)
        self.approval_key = self._approval_key()
        secrets = sorted(
            {
                arn
                for db in restorable
                for target in [db, *(resolve_target(db, name, o) for name, o in db.restore_targets.items())]
                if isinstance(target, ServerDatabase) and (arn := target.password_secret)
            }
        )
        if secrets:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=secrets)
            )

        vpc = next((db.vpc for db in restorable if db.vpc is not None), None)
        efs = next(
            (db.efs for db in restorable if isinstance(db, SqliteDatabase | FilesDatabase) and db.efs is not None), None
        )
        document = {
            "bucket": config.bucket,
            "prefix": config.prefix,
            "kms_key_id": vault.key.key_arn,
            "alerts_topic_arn": alerts_topic_arn,
            "restore": config.restore.model_dump(mode="json"),
        }  # the databases are the catalog: this environment does not grow with them
        catalog.grant_read(self.role)
        self.function = runner.function(
            self,
            "Function",
            FunctionSpec(
                handler=RESTORE_HANDLER,
                description="Backstop restore workflow steps",
                role=self.role,
                environment={
                    "BACKSTOP_CONFIG_JSON": Stack.of(self).to_json_string(document),
                    **catalog.environment,
                    "BACKSTOP_RESTORE_TABLE": self.table.table_name,
                    "BACKSTOP_STATE_MACHINE_ARN": self.state_machine_arn,
                    "BACKSTOP_APPROVAL_KEY_ARN": self.approval_key.attr_arn,
                    "POWERTOOLS_SERVICE_NAME": Service.RESTORE,
                    "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
                },
                memory_mb=2048,
                timeout_seconds=900,
                ephemeral_storage_mb=10240,
                vpc=vpc,
                file_system=grant_network(self.role, vpc, efs, writable=True),
            ),
            label="restore",
        )
        self.approval_function = runner.function(
            self,
            "ApprovalFunction",
            FunctionSpec(
                handler=APPROVAL_HANDLER,
                description="Backstop approval component: the only producer of restore approval grants",
                role=self.approval_role,
                environment={
                    "BACKSTOP_RESTORE_TABLE": self.table.table_name,
                    "BACKSTOP_STATE_MACHINE_ARN": self.state_machine_arn,
                    "BACKSTOP_APPROVAL_KEY_ARN": self.approval_key.attr_arn,
                    "BACKSTOP_DISTINCT_APPROVER": "true" if config.restore.distinct_approver else "false",
                    "BACKSTOP_APPROVERS": json.dumps(list(config.restore.approvers)),
                    "BACKSTOP_ALERTS_TOPIC_ARN": alerts_topic_arn,
                    "POWERTOOLS_SERVICE_NAME": Service.APPROVAL,
                },
                memory_mb=256,
                timeout_seconds=30,
            ),
            label="approval",
        )
        self.state_machine = self._state_machine()
        self.requester_policy, self.approver_policy = self._operator_policies()

    def _grant_vault(
        self,
        vault: BackupVault,
        config: Config,
        restorable: list[Any],
    ) -> None:
        prefix = config.prefix
        safety = [safety_database(db.name, t) for db in restorable for t in db.restore_targets]
        reads = [vault.bucket.arn_for_objects(f"{prefix}/{db.name}/*") for db in restorable]
        writes = [vault.bucket.arn_for_objects(f"{prefix}/{name}/*") for name in safety]
        in_place = [db.name for db in restorable if IN_PLACE in db.restore_targets]
        locks = [vault.bucket.arn_for_objects(f"{prefix}/_locks/{name}.backup.json") for name in safety + in_place]
        failures = [vault.bucket.arn_for_objects(f"{prefix}/_failures/{name}/*") for name in safety]
        listed = [
            p for name in [db.name for db in restorable] + safety for p in (f"{prefix}/{name}/", f"{prefix}/{name}/*")
        ]
        statements = [
            iam.PolicyStatement(sid="ReadBackups", actions=["s3:GetObject", "s3:GetObjectVersion"], resources=reads),
            iam.PolicyStatement(
                sid="WriteSafetySnapshots",
                actions=[
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:PutObject",
                    "s3:PutObjectTagging",
                    "s3:AbortMultipartUpload",
                    *vault.lock_actions,
                ],
                resources=writes,
            ),
            iam.PolicyStatement(
                sid="RunLocks",  # the safety snapshots' and, in place, the source's (no backup during a restore)
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=locks,
            ),
            iam.PolicyStatement(
                sid="SafetySnapshotFailures", actions=["s3:PutObject", "s3:PutObjectTagging"], resources=failures
            ),
            iam.PolicyStatement(
                sid="ListRestorablePrefixes",
                actions=["s3:ListBucket"],
                resources=[vault.bucket.bucket_arn],
                conditions={"StringLikeIfExists": {"s3:prefix": listed}},
            ),
            iam.PolicyStatement(
                sid="UseVaultKeyThroughS3",
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[vault.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{Stack.of(self).region}.amazonaws.com"},
                    # as every other vault role: only for this bucket (its ARN with a Bucket Key, else the object's)
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [vault.bucket.bucket_arn, f"{vault.bucket.bucket_arn}/*"]
                    },
                },
            ),
        ]
        for statement in statements:
            self.role.add_to_principal_policy(statement)
        patterns = [f"{prefix}/{name}/*" for name in [db.name for db in restorable] + safety] + [
            f"{prefix}/_failures/{name}/*" for name in safety
        ]
        vault.acknowledge_key_patterns(
            self.role,
            patterns,
            "Backup and safety-snapshot keys are named by the time of each run, so they are unknown when deploying; "
            "every object grant stops at a restorable database's or its safety snapshots' own prefix, and the "
            "bucket policy refuses writers outside Backstop roles.",
        )

    def _grant_read_executions(self, role: iam.Role) -> None:
        """Describe and read the history of this state machine's executions: the context a step proves."""
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ProveTheExecutionContext",
                actions=["states:DescribeExecution", "states:GetExecutionHistory"],
                resources=[self.executions_arn],
            )
        )
        Validations.of(role).acknowledge(  # the role: its overflow policies too
            Acknowledgment(
                id=EXECUTIONS_FINDING,
                reason=EXECUTIONS_REASON,
            )
        )

    def _approval_key(self) -> kms.CfnKey:
        """The HMAC key that seals approval grants: GenerateMac for the approval role, VerifyMac for the restore role.

        Written as the L1 resource: the L2 always lets the account root do ``kms:*``, which any
        principal with ``kms:*`` in IAM (PowerUserAccess) could then use to seal a grant. Here the
        account reads the key, only the CDK CloudFormation execution roles manage it, and no statement
        but these two names GenerateMac or VerifyMac (nor CreateGrant, which could hand them out).
        """
        account_root = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:root"
        execution_roles = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:{CDK_EXECUTION_ROLES}"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AccountReadsTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": account_root},
                    "Action": KEY_READS,
                    "Resource": "*",
                },
                {
                    "Sid": "OnlyDeploymentsManageTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": account_root},
                    "Action": KEY_MANAGEMENT,
                    "Resource": "*",
                    "Condition": {"ArnLike": {"aws:PrincipalArn": execution_roles}},
                },
                {
                    "Sid": "OnlyTheApprovalRoleSealsGrants",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.approval_role.role_arn},
                    "Action": "kms:GenerateMac",
                    "Resource": "*",
                },
                {
                    "Sid": "OnlyTheRestoreRoleChecksGrants",
                    "Effect": "Allow",
                    "Principal": {"AWS": self.role.role_arn},
                    "Action": "kms:VerifyMac",
                    "Resource": "*",
                },
            ],
        }
        return kms.CfnKey(
            self,
            "ApprovalKey",
            description="Backstop: seals restore approval grants (HMAC)",
            key_spec="HMAC_256",
            key_usage="GENERATE_VERIFY_MAC",
            key_policy=policy,
            pending_window_in_days=30,
        )

    def _operator_policies(self) -> tuple[iam.ManagedPolicy, iam.ManagedPolicy]:
        """What a person needs to request a restore, and to approve one: attach to their group, role or user."""
        read = iam.PolicyStatement(
            sid="FollowRestores",
            actions=["states:DescribeExecution", "states:GetExecutionHistory"],
            resources=[self.executions_arn],
        )
        audit = iam.PolicyStatement(
            sid="ReadTheAuditTrail",
            actions=["dynamodb:GetItem", "dynamodb:Query"],
            resources=[self.table.table_arn, f"{self.table.table_arn}/index/*"],
        )
        requester = iam.ManagedPolicy(
            self,
            "RequesterPolicy",
            description="Backstop: request restores (backstop restore-request) and follow them",
            statements=[
                iam.PolicyStatement(
                    sid="StartRestores",
                    actions=["states:StartExecution"],
                    resources=[self.state_machine.state_machine_arn],
                ),
                read,
                audit,
            ],
        )
        approver = iam.ManagedPolicy(
            self,
            "ApproverPolicy",
            description="Backstop: approve or reject restores (backstop approve / reject) and follow them",
            statements=[
                iam.PolicyStatement(
                    sid="AskTheApprovalComponent",
                    actions=["lambda:InvokeFunction"],
                    resources=[self.approval_function.function_arn],
                ),
                read,
                audit,
            ],
        )
        for policy in (requester, approver):
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=EXECUTIONS_FINDING,
                    reason=EXECUTIONS_REASON,
                ),
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{_logical_id(self.table)}.Arn>/index/*]",
                    reason="`backstop restores` lists the audit trail through the restore table's own by-kind "
                    "index; no other table is reachable.",
                ),
            )
        return requester, approver

    def _acknowledge_table_index(self, role: iam.Role) -> None:
        """The table grant covers the table's own indexes (``<table>/index/*``): the by-kind listing."""
        # On the role: when its statements outgrow one policy, IAM's overflow policies are its children too.
        Validations.of(role).acknowledge(
            Acknowledgment(
                id=f"AwsSolutions-IAM5[Resource::<{_logical_id(self.table)}.Arn>/index/*]",
                reason="The restore table's grant includes its own indexes (the audit listing by kind); "
                "no other table is reachable.",
            )
        )

    # -- the state machine ----------------------------------------------------------------------

    def _task(self, step: Step, comment: str, *, name: str | None = None, **payload: Any) -> tasks.LambdaInvoke:
        """The Task that sends ``step`` to the restore function, named as the step guard expects (``name``: one of
        the step's states, for ``finish``)."""
        name = name or state_of(step)
        body = {
            "step": step,
            "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
            "state": sfn.JsonPath.entire_payload,
            **payload,
        }
        task = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(body),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(STEP_TIMEOUT),
            comment=comment,
        )
        task.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        return task

    def _finish(self, name: str, *, failed: bool, error_at: str = "$.error") -> tasks.LambdaInvoke:
        outcome = FINISH_OUTCOMES[name]  # the one outcome the step guard lets this state finish with
        extra: dict[str, Any] = {"outcome": outcome}
        if failed:
            extra["error"] = sfn.JsonPath.object_at(error_at)
        return self._task(
            Step.FINISH, f"Release the lock, close the audit record, publish: {outcome}", name=name, **extra
        )

    def _state_machine(self) -> sfn.StateMachine:
        resolve = tasks.LambdaInvoke(
            self,
            state_of(Step.RESOLVE),
            lambda_function=self.function,
            payload=sfn.TaskInput.from_object(
                {
                    "step": Step.RESOLVE,
                    "input": sfn.JsonPath.object_at("$$.Execution.Input"),
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                }
            ),
            payload_response_only=True,
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
            comment="Validate the input and the target, find the backup, open the audit record",
        )
        resolve.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        identify = tasks.LambdaInvoke(
            self,
            state_of(Step.IDENTIFY_REQUESTER),
            lambda_function=self.approval_function,
            payload=sfn.TaskInput.from_object(
                {"step": Step.IDENTIFY_REQUESTER, "execution": sfn.JsonPath.string_at("$$.Execution.Id")}
            ),
            result_path="$.requester",
            payload_response_only=True,
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.minutes(1)),
            comment="Who asked, as AWS says (the signed identity in the input), or marked unverified",
        )
        identify.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        validate = self._task(Step.VALIDATE_ARTIFACT, "Checksum, decompression, engine check")
        lock = self._task(Step.LOCK, "Take the target's lock (conditional write with owner and expiry)")
        plan = self._task(Step.PLAN, "Backup vs target, safety snapshot, estimated duration")
        approval = tasks.LambdaInvoke(
            self,
            state_of(Step.REQUEST_APPROVAL),
            lambda_function=self.function,
            integration_pattern=sfn.IntegrationPattern.WAIT_FOR_TASK_TOKEN,
            payload=sfn.TaskInput.from_object(
                {
                    "step": Step.REQUEST_APPROVAL,
                    "execution": sfn.JsonPath.string_at("$$.Execution.Id"),
                    "state": sfn.JsonPath.entire_payload,
                    "token": sfn.JsonPath.task_token,
                }
            ),
            result_path="$.approval",
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.seconds(int(self.approval_timeout.total_seconds()))),
            comment="Publish the plan and wait for `backstop approve` (phrase RESTORE <backup_id>) or a rejection",
        )
        # A transient Lambda error before the plan is published is retried; the retry stores a new
        # token in place of the old one, so only the latest request can be answered.
        approval.add_retry(errors=LAMBDA_TRANSIENT, interval=Duration.seconds(2), max_attempts=3, backoff_rate=2)
        check_approval = self._task(
            Step.CHECK_APPROVAL,
            "The answer must be a grant sealed by the approval component for this execution, target and backup",
        )
        safety = self._task(Step.SAFETY_SNAPSHOT, "Back up the target through the backup path")
        # In place, a backup of the source running right now holds the lock the restore needs: wait for it.
        safety.add_retry(
            errors=[BackupAlreadyRunningError.__name__],
            interval=Duration.minutes(1),
            max_attempts=SOURCE_BACKUP_WAITS,
            backoff_rate=2,
        )
        restore = self._task(Step.RESTORE, "Restore atomically: fresh copy, validated, swapped in")
        check = self._task(Step.VALIDATE_TARGET, "Row counts of the target equal the backup's")
        rollback = self._task(Step.ROLLBACK, "Put the safety snapshot back and validate it")

        done = sfn.Succeed(self, "Restored")
        dry_done = sfn.Succeed(self, "DryRunReported")
        not_restored = sfn.Fail(self, "NotRestored", error="RestoreFailed", cause="The target was not touched")
        rolled_back = sfn.Fail(self, "RolledBack", error="RestoreRolledBack", cause="The target was rolled back")
        rollback_failed = sfn.Fail(
            self, "RollbackFailed", error="RollbackFailed", cause="Manual intervention needed; the lock is kept"
        )

        finish_not_restored = self._finish("FinishNotRestored", failed=True).next(not_restored)
        finish_rolled_back = self._finish("FinishRolledBack", failed=True).next(rolled_back)
        for state in (resolve, identify, validate, lock, plan, approval, check_approval, safety):
            state.add_catch(finish_not_restored, errors=["States.ALL"], result_path="$.error")
        for state in (restore, check):
            state.add_catch(rollback, errors=["States.ALL"], result_path="$.error")
        # Whatever made the rollback fail (its own error, a crash, a timeout), the lock is kept and a person
        # is called; if even that step fails, the execution still ends as RollbackFailed, lock unreleased.
        finish_rollback_failed = self._finish("FinishRollbackFailed", failed=True, error_at="$.rollback_error")
        finish_rollback_failed.add_catch(rollback_failed, errors=["States.ALL"], result_path="$.finish_error")
        finish_rollback_failed.next(rollback_failed)
        rollback.add_catch(finish_rollback_failed, errors=["States.ALL"], result_path="$.rollback_error")
        rollback.next(finish_rolled_back)

        dry_run = sfn.Choice(self, "DryRun?")
        definition = (
            resolve.next(identify)
            .next(validate)
            .next(lock)
            .next(plan)
            .next(
                dry_run.when(
                    sfn.Condition.boolean_equals("$.dry_run", True),
                    self._finish("FinishDryRun", failed=False).next(dry_done),
                ).otherwise(
                    approval.next(check_approval)
                    .next(safety)
                    .next(restore)
                    .next(check)
                    .next(self._finish("FinishRestored", failed=False).next(done))
                )
            )
        )
        # Under /aws/vendedlogs/states/: CloudWatch Logs then needs no resource policy entry for the machine,
        # which fails CreateStateMachine in accounts whose resource policy is near its 5,120-character limit.
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=f"/aws/vendedlogs/states/{self.state_machine_name}",
            retention=LOG_RETENTION[self._log_retention_days],
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.seconds(int((self.approval_timeout + EXECUTION_MARGIN).total_seconds())),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment="Backstop restore: validate, lock, approve, snapshot, restore, validate, roll back on failure",
        )
        policy = machine.role.node.find_child("DefaultPolicy")
        # The L2 also makes the machine depend on the role it already references (cfn-lint W3005):
        # keep only the dependency on the role's policy, which must exist before the first execution.
        cfn_machine = machine.node.default_child
        if not isinstance(cfn_machine, CfnResource):
            raise TypeError("the state machine has no CloudFormation resource")
        cfn_machine.add_override("DependsOn", [_logical_id(policy)])
        for finding, reason in (
            *(
                (
                    f"Resource::<{_logical_id(self.node.find_child(function))}.Arn>:*",
                    f"CDK's LambdaInvoke grants lambda:InvokeFunction on the {what} function and its versions "
                    "(<arn>:*); no other function is reachable.",
                )
                for function, what in (("Function", "restore"), ("ApprovalFunction", "approval"))
            ),
            (
                "Resource::*",
                "X-Ray tracing (PutTraceSegments, PutTelemetryRecords, GetSampling*) and CloudWatch Logs delivery "
                "(CreateLogDelivery and friends) take no resource ARN.",
            ),
        ):
            Validations.of(policy).acknowledge(Acknowledgment(id=f"AwsSolutions-IAM5[{finding}]", reason=reason))
        return machine


def _logical_id(construct: IConstruct) -> str:
    """The CloudFormation logical id of ``construct``'s default resource, as cdk-nag names it in findings."""
    child = construct if isinstance(construct, CfnElement) else construct.node.default_child
    if not isinstance(child, CfnElement):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource")
    return str(Stack.of(construct).resolve(Stack.of(construct).get_logical_id(child)))
