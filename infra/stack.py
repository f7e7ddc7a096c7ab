"""BackstopStack: composes the Backstop constructs from one validated backstop.yaml."""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Stack
from constructs import Construct

from backstop.config import Config
from infra.backup_vault import BackupVault
from infra.catalog import DatabaseCatalog
from infra.drills import Verification
from infra.endpoints import VpcEndpoints
from infra.limits import check_limits
from infra.monitoring import Monitoring
from infra.restore_workflow import RestoreWorkflow
from infra.runner import RunnerImage
from infra.scheduled_backups import ScheduledBackups


class BackstopStack(Stack):
    """Everything `cdk deploy` ships: the vault, the runner image, monitoring, the scheduled backups,
    when a database declares restore targets the restore workflow, and with ``vpc.create_endpoints``
    the VPC endpoints of the functions placed there."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, emulated: bool = False) -> None:
        """``emulated``: the template is for the embedded emulator, whose functions run on this machine
        (local paths and variables are reachable, so no EFS or secret is required)."""
        super().__init__(
            scope,
            construct_id,
            description="Backstop: scheduled, verified database backups and approved restores",
        )
        self.vault = BackupVault(self, "Vault", config=config)
        self.runner = RunnerImage(self, "Runner", runner=config.runner)
        self.catalog = DatabaseCatalog(self, "Catalog", config=config)
        self.monitoring = Monitoring(self, "Monitoring", config=config, vault=self.vault, runner=self.runner)
        self.backups = ScheduledBackups(
            self,
            "Backups",
            config=config,
            vault=self.vault,
            runner=self.runner,
            monitoring=self.monitoring,
            emulated=emulated,
        )
        self.restore: RestoreWorkflow | None = None
        if any(db.restore_targets for db in config.databases):
            self.restore = RestoreWorkflow(
                self,
                "Restore",
                config=config,
                vault=self.vault,
                runner=self.runner,
                grant_publish=self.monitoring.grant_publish,
                alerts_topic_arn=self.monitoring.topic.topic_arn,
                catalog=self.catalog,
                emulated=emulated,
            )

        self.verification = Verification(
            self,
            "Verification",
            config=config,
            vault=self.vault,
            runner=self.runner,
            monitoring=self.monitoring,
            restore_table=self.restore.table if self.restore is not None else None,
            catalog=self.catalog,
        )
        self.endpoints = VpcEndpoints(self, "Endpoints", config=config)
        self.monitoring.alarm_on_errors(self.runner.functions)
        self.dashboard = self.monitoring.add_dashboard(self.backups.watched)
        self.verification.add_to(self.dashboard, config)
        # Last: every resource is made (but IAM's overflow policies, which CDK's own check at synthesis counts).
        check_limits(self)

        CfnOutput(
            self,
            "BucketName",
            value=self.vault.bucket.bucket_name,
            description="The backup vault bucket (backstop.yaml `bucket`)",
        )
        CfnOutput(
            self,
            "KeyArn",
            value=self.vault.key.key_arn,
            description="The KMS key that encrypts the vault (backstop.yaml `kms_key_id` for the command line)",
        )
        CfnOutput(
            self,
            "AlertsTopicArn",
            value=self.monitoring.topic.topic_arn,
            description="The alerts topic (backstop.yaml `alerts_topic_arn` for the command line)",
        )
        CfnOutput(
            self,
            "DeadLetterQueueUrl",
            value=self.monitoring.dead_letters.queue_url,
            description="Scheduled invocations that could not be delivered",
        )
        CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://console.aws.amazon.com/cloudwatch/home?region={Aws.REGION}#dashboards:name="
            f"{self.dashboard.dashboard_name}",
            description="The CloudWatch dashboard of every backup",
        )
        if self.restore is not None:
            CfnOutput(
                self,
                "RestoreStateMachineArn",
                value=self.restore.state_machine.state_machine_arn,
                description="Start a restore here (console or `backstop restore-request`; BACKSTOP_STATE_MACHINE_ARN)",
            )
            CfnOutput(
                self,
                "ApprovalFunctionName",
                value=self.restore.approval_function.function_name,
                description="The approval component (`backstop approve` / `reject`; BACKSTOP_APPROVAL_FUNCTION)",
            )
            CfnOutput(
                self,
                "RequesterPolicyArn",
                value=self.restore.requester_policy.managed_policy_arn,
                description="Attach to whoever may request restores (docs/runbooks/restore.md, trust model)",
            )
            CfnOutput(
                self,
                "ApproverPolicyArn",
                value=self.restore.approver_policy.managed_policy_arn,
                description="Attach to whoever may approve restores (docs/runbooks/restore.md, trust model)",
            )
            CfnOutput(
                self,
                "RestoreTableName",
                value=self.restore.table.table_name,
                description="Restore locks, approvals and audit (`backstop approve`, `backstop restores`; "
                "BACKSTOP_RESTORE_TABLE)",
            )
