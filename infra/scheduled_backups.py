"""Scheduled backups: per database, a function of the runner image, its role, and its schedule.

Each database gets its own function (its own memory, time limit, /tmp size, VPC and EFS mount, and
the database's configuration in its environment), its own IAM role, and its own EventBridge
Scheduler schedule whose input names the database and the time, nothing else
(``infra.schedules.scheduled_input``). A role may touch only its database's keys in the vault, its
run lock and failure records, use the vault key through S3, read its own password secret, publish
alerts, and hand a failed invocation to the failure-alert function.

A failure takes one of two roads to an alert: an invocation Scheduler cannot deliver goes to the
dead-letter queue; a backup that fails after Lambda's two retries goes to the failure-alert
function as the OnFailure destination. Both retry safely: a backup's key is a function of the
database and the scheduled time, so a repeated delivery finds the committed backup and stops.
"""

from __future__ import annotations

from datetime import timedelta

from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct, IConstruct

from backstop.config import AnyDatabase, Config, FilesDatabase, ServerDatabase, SqliteDatabase
from backstop.errors import ConfigError
from infra.backup_vault import BackupVault
from infra.monitoring import Monitoring, WatchedBackup
from infra.network import grant_network
from infra.runner import BACKUP_HANDLER, FileSystemMount, FunctionSpec, RunnerImage
from infra.schedules import (
    BACKUP_LEAVES_OUT,
    DRILL_LEAVES_OUT,
    ScheduledInvocation,
    database_environment,
    scheduled_input,
)

LAMBDA_RETRIES = 2
"""Attempts Lambda makes after a failed asynchronous invocation before the OnFailure destination."""

LAMBDA_EVENT_AGE = timedelta(hours=6)
"""How long Lambda keeps an invocation it could not run (throttled) before the OnFailure destination."""

DATABASE_ENVIRONMENT_LIMIT = 3072
"""Bytes of a database's configuration (as JSON) its functions' environments can hold: Lambda allows
4 KB for all variables, and the vault's names and ARNs take the rest."""


class DeploymentConfigError(ConfigError):
    """A database is valid for the command line but cannot be backed up by a deployed function."""


def deployment_problems(config: Config, *, emulated: bool = False) -> list[str]:
    """What stops each database from being backed up in AWS, one sentence each (none: deployable).

    ``emulated``: the functions run on this machine (the embedded emulator), where local paths and
    the local environment are reachable: nothing to check.
    """
    problems: list[str] = []
    if emulated:
        return problems
    for index, db in enumerate(config.databases):
        where = f"databases[{index}] ({db.name})"
        size = len(database_environment(db, leave_out=DRILL_LEAVES_OUT)["BACKSTOP_DATABASE"])
        if size > DATABASE_ENVIRONMENT_LIMIT:
            problems.append(
                f"{where}: its configuration is {size} bytes as JSON, and its functions' environment holds at "
                f"most {DATABASE_ENVIRONMENT_LIMIT}: shorten its lists (validation_queries, exclude, restore_targets)"
            )
        if isinstance(db, SqliteDatabase | FilesDatabase) and db.efs is None:
            problems.append(
                f"{where}: a {db.engine} database is read from {db.path}, which a function reaches only on EFS: "
                "add efs (file_system_id, access_point_id, mount_path) and vpc"
            )
        if isinstance(db, ServerDatabase) and db.password_env is not None:
            problems.append(
                f"{where}: password_env names a variable the deployed function does not have: "
                "use password_secret (a Secrets Manager ARN) instead"
            )
    return problems


class DatabaseBackup(Construct):
    """One database's backup function, role and schedule."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database: AnyDatabase,
        vault: BackupVault,
        runner: RunnerImage,
        monitoring: Monitoring,
    ) -> None:
        super().__init__(scope, construct_id)
        self.database = database
        # The vault's bucket policy lets only roles on this path write under the backup prefix.
        self.role = iam.Role(
            self,
            "Role",
            description=f"Backstop backup of {database.name}",
            path=vault.writer_role_path,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        vault.grant_backup(self.role, database.name)
        monitoring.grant_publish(self.role)
        if isinstance(database, ServerDatabase) and database.password_secret is not None:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadOwnPasswordSecret",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[database.password_secret],
                )
            )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="HandFailuresToTheFailureAlertFunction",
                actions=["lambda:InvokeFunction"],
                resources=[monitoring.failure_alert.function_arn],
            )
        )

        file_system = self._grant_network(database)

        limits = database.function
        self.function = runner.function(
            self,
            "Function",
            FunctionSpec(
                handler=BACKUP_HANDLER,
                description=f"Backstop: backs up {database.name} ({database.engine}) on {database.schedule}",
                role=self.role,
                environment={**monitoring.environment, **database_environment(database, leave_out=BACKUP_LEAVES_OUT)},
                memory_mb=limits.memory_mb,
                timeout_seconds=int(limits.timeout.total_seconds()),
                ephemeral_storage_mb=limits.ephemeral_storage_mb,
                vpc=database.vpc,
                file_system=file_system,
            ),
            label=f"{database.name}-backup",
        )

        # Written as the L1 resource so the role's grant is exactly this function, not also its versions.
        self.async_invoke = lambda_.CfnEventInvokeConfig(
            self,
            "AsyncInvoke",
            function_name=self.function.function_name,
            qualifier="$LATEST",
            maximum_retry_attempts=LAMBDA_RETRIES,
            maximum_event_age_in_seconds=int(LAMBDA_EVENT_AGE.total_seconds()),
            destination_config=lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
                on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(
                    destination=monitoring.failure_alert.function_arn
                )
            ),
        )
        # Lambda checks the role may invoke the destination when the configuration is created.
        self.async_invoke.node.add_dependency(self._policy())

        self.schedule = ScheduledInvocation(
            self,
            "Schedule",
            function=self.function,
            expression=database.schedule,
            timezone=database.timezone,
            payload=scheduled_input(database.name),
            description=f"Backstop: backs up {database.name}",
            dead_letters=monitoring.dead_letters,
            dead_letter_key=monitoring.key,
        )

    def _policy(self) -> IConstruct:
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is None:
            raise RuntimeError("the backup role has no default policy")
        return policy

    def _grant_network(self, database: AnyDatabase) -> FileSystemMount | None:
        """Let the role attach the function to the configured VPC and mount its EFS access point, if any.

        A directory is only read. SQLite's backup API takes the database's locks, which in WAL mode
        means writing its -shm file, so a SQLite database's mount must be writable.
        """
        efs = database.efs if isinstance(database, SqliteDatabase | FilesDatabase) else None
        return grant_network(self.role, database.vpc, efs, writable=isinstance(database, SqliteDatabase))


class ScheduledBackups(Construct):
    """Every database's scheduled backup; refuses a configuration a deployed function could not back up."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vault: BackupVault,
        runner: RunnerImage,
        monitoring: Monitoring,
        emulated: bool = False,
    ) -> None:
        super().__init__(scope, construct_id)
        problems = deployment_problems(config, emulated=emulated)
        if problems:
            raise DeploymentConfigError("The configuration cannot be deployed: " + "; ".join(problems) + ".")
        self.backups = [
            DatabaseBackup(self, db.name, database=db, vault=vault, runner=runner, monitoring=monitoring)
            for db in config.databases
        ]

    @property
    def watched(self) -> list[WatchedBackup]:
        """Each database's function, for the dashboard."""
        return [WatchedBackup(backup.database.name, backup.function) for backup in self.backups]
