"""Restore drills and verification sweeps: the proof, on a schedule, that backups restore.

Per database with a drill: a function of the runner image (in the database's VPC, with its EFS
access point when the drill's scratch directory is on it), a role that reads the database's backups
and writes only their drill records (plus the audit table and the drill server's secret), with the
database's configuration in its environment, and a schedule at the drill's cadence whose input
names the database and the time. One sweep function for the whole vault reads every database's
backups within its byte budget (both in its environment; its schedule sends the time) and writes
only sweep records. One keep-last-good guard, every 6 hours, holds each database's newest good backups
out of lifecycle's reach; its role may only move a tier tag between ``<tier>`` and ``held-<tier>``.
Alarms: a failed drill, a drill slower than its RTO, a sweep that found a mismatch.
"""

from __future__ import annotations

from datetime import timedelta

from aws_cdk import Annotations, Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from backstop.config import AnyDatabase, Config, FileDrill, FilesDatabase, ServerDrill, SqliteDatabase
from backstop.observability import Metric, Service
from infra.backup_vault import BackupVault
from infra.catalog import DatabaseCatalog
from infra.monitoring import Monitoring
from infra.network import grant_network
from infra.runner import DRILL_HANDLER, GUARD_HANDLER, SWEEP_HANDLER, FunctionSpec, RunnerImage
from infra.schedules import (
    DRILL_LEAVES_OUT,
    ScheduledInvocation,
    checked_at_input,
    database_environment,
    rate_expression,
    scheduled_input,
)

GUARD_EVERY = timedelta(hours=6)
"""How often the keep-last-good guard runs: a new backup is held, and an old one released, within this."""
GUARD_ENVIRONMENT = frozenset(
    {"BACKSTOP_BUCKET", "BACKSTOP_PREFIX", "BACKSTOP_KMS_KEY_ID", "BACKSTOP_ALERTS_TOPIC_ARN"}
)

DRILL_STAMP = "????????T??????Z-??????"
"""The time and random suffix of a drill's audit record (services/drill.py): no other database's drills match."""


class DatabaseDrill(Construct):
    """The scheduled restore drill of one database."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        database: AnyDatabase,
        vault: BackupVault,
        runner: RunnerImage,
        monitoring: Monitoring,
        restore_table: dynamodb.ITable | None,
    ) -> None:
        super().__init__(scope, construct_id)
        drill = database.drill
        assert drill is not None  # only databases with a drill get one
        self.role = iam.Role(
            self,
            "Role",
            description=f"Backstop restore drill of {database.name}: reads its backups, writes drill records",
            path=vault.writer_role_path,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        vault.grant_verify(self.role, [database.name], "drill")
        monitoring.grant_publish(self.role)
        environment = {**monitoring.environment, **database_environment(database, leave_out=DRILL_LEAVES_OUT)}
        if restore_table is not None:
            # One audit record per drill, nothing else: no locks, no approvals, no reads, and only under
            # this database's drill keys, so it can never write over a restore's record.
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="RecordDrillAudit",
                    actions=["dynamodb:PutItem"],
                    resources=[restore_table.table_arn],
                    conditions={
                        "ForAllValues:StringLike": {
                            "dynamodb:LeadingKeys": [f"restore#drill-{database.name}-{DRILL_STAMP}"]
                        }
                    },
                )
            )
            environment["BACKSTOP_RESTORE_TABLE"] = restore_table.table_name
        secret = drill.server.password_secret if isinstance(drill, ServerDrill) else None
        if secret:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="ReadDrillServerSecret", actions=["secretsmanager:GetSecretValue"], resources=[secret]
                )
            )
        # A scratch directory of its own is on the database's EFS (the config keeps it under the mount);
        # the default scratch space is the function's /tmp.
        scratch_on_efs = isinstance(drill, FileDrill) and drill.path is not None
        efs = database.efs if scratch_on_efs and isinstance(database, SqliteDatabase | FilesDatabase) else None
        # A server drill reaches its drill server; a file drill needs the VPC only to mount its scratch on EFS:
        # one that restores into /tmp reads S3 alone and runs outside any VPC (no endpoints, no NAT needed).
        vpc = database.vpc if isinstance(drill, ServerDrill) or efs is not None else None
        mount = grant_network(self.role, vpc, efs, writable=True)
        self.function = runner.function(
            self,
            "Function",
            FunctionSpec(
                handler=DRILL_HANDLER,
                description=f"Backstop: restore drill of {database.name} every {drill.every}",
                role=self.role,
                environment=environment,
                memory_mb=database.function.memory_mb,
                timeout_seconds=900,
                ephemeral_storage_mb=10240,  # SQLite and directory drills restore into /tmp by default
                vpc=vpc,
                file_system=mount,
            ),
            label=f"{database.name}-drill",
        )
        self.schedule = ScheduledInvocation(
            self,
            "Schedule",
            function=self.function,
            expression=rate_expression(drill.every),
            timezone="UTC",
            payload=scheduled_input(database.name),
            description=f"Backstop: restore drill of {database.name}",
            dead_letters=monitoring.dead_letters,
            dead_letter_key=monitoring.key,
        )


MAX_ALARM_WINDOW = timedelta(days=7)
"""The longest window a CloudWatch alarm can evaluate (period x evaluation periods)."""


class Verification(Construct):
    """Every database's drill, the vault's sweep and keep-last-good guard, and their alarms."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        vault: BackupVault,
        runner: RunnerImage,
        monitoring: Monitoring,
        restore_table: dynamodb.ITable | None,
        catalog: DatabaseCatalog,
    ) -> None:
        super().__init__(scope, construct_id)
        self._monitoring = monitoring
        self.drills = [
            DatabaseDrill(
                self,
                f"Drill{db.name}",
                database=db,
                vault=vault,
                runner=runner,
                monitoring=monitoring,
                restore_table=restore_table,
            )
            for db in config.databases
            if db.drill is not None
        ]
        sweep_role = iam.Role(
            self,
            "SweepRole",
            description="Backstop verification sweep: re-reads stored backups, writes sweep records",
            path=vault.writer_role_path,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        vault.grant_verify(sweep_role, [db.name for db in config.databases], "sweep")
        monitoring.grant_publish(sweep_role)
        catalog.grant_read(sweep_role)
        self.sweep: lambda_.IFunction = runner.function(
            self,
            "Sweep",
            FunctionSpec(
                handler=SWEEP_HANDLER,
                description="Backstop: re-reads stored backups within a byte budget and checks their SHA-256",
                role=sweep_role,
                environment={
                    **monitoring.environment,
                    **catalog.environment,  # the databases and their retention
                    "BACKSTOP_BUDGET": str(int(config.sweep.budget)),
                },
                memory_mb=1024,
                timeout_seconds=900,
            ),
            label="sweep",
        )
        if config.sweep.repair:
            Annotations.of(self.sweep).add_warning_v2(
                "backstop:sweep-repair-is-cli-only",
                "sweep.repair applies to `backstop sweep` run with a storage.administrators role: the deployed "
                "sweep alerts an overwritten backup and repairs nothing, because repair deletes object versions, "
                "which the vault's bucket policy refuses to every function.",
            )
        self.sweep_schedule = ScheduledInvocation(
            self,
            "SweepSchedule",
            function=self.sweep,
            expression=rate_expression(config.sweep.every),
            timezone="UTC",
            payload=checked_at_input(),
            description="Backstop: verification sweep of stored backups",
            dead_letters=monitoring.dead_letters,
            dead_letter_key=monitoring.key,
        )
        self.guard, self.guard_schedule = self._guard(config, vault, runner, monitoring, catalog)
        self.alarms: list[cloudwatch.Alarm] = []
        for db in config.databases:
            if db.drill is None:
                continue
            self._monitored(
                f"{db.name}DrillFailed",
                name=f"{db.name}-drill-failed",
                description=f"A restore drill of {db.name} failed: its backup did not restore and validate "
                "(docs/runbooks/drills.md).",
                metric=self._monitoring.metric(
                    Metric.DRILL_SUCCEEDED, Service.DRILL, db.name, "Minimum", Duration.days(1)
                ),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            )
            window = Duration.seconds(min(2 * int(config.freshness.every.total_seconds()), 86400))
            self._monitored(
                f"{db.name}DrillOverdue",
                name=f"{db.name}-drill-overdue",
                description=f"No restore drill of {db.name} succeeded in twice its cadence "
                f"({int(2 * db.drill.every.total_seconds())} s), as the freshness check measures it.",
                metric=self._monitoring.metric(
                    Metric.LAST_SUCCESSFUL_DRILL_AGE, Service.FRESHNESS, db.name, "Maximum", window
                ),
                threshold=2 * db.drill.every.total_seconds(),
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                # measured at every freshness check: no value means the check did not run
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
            if db.drill.rto is not None:
                self._monitored(
                    f"{db.name}DrillSlow",
                    name=f"{db.name}-drill-over-rto",
                    description=f"A restore drill of {db.name} took longer than its RTO "
                    f"({int(db.drill.rto.total_seconds())} s).",
                    metric=self._monitoring.metric(
                        Metric.DRILL_DURATION, Service.DRILL, db.name, "Maximum", Duration.days(1)
                    ),
                    threshold=db.drill.rto.total_seconds(),
                    comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                )
        # Held backups outlive an outage only while the guard runs: its silence for a day is an alarm.
        self._monitored(
            "GuardNotRunning",
            name="guard-not-running",
            description="The keep-last-good guard has not completed a run in a day: the newest good backups are "
            "not being held out of lifecycle's reach (docs/storage.md, Keep last good).",
            metric=self._monitoring.metric(Metric.HELD_BACKUPS, Service.GUARD, None, "SampleCount", Duration.days(1)),
            threshold=1,
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
            missing=cloudwatch.TreatMissingData.BREACHING,
        )
        if 2 * config.sweep.every <= MAX_ALARM_WINDOW:
            # Every sweep run counts what it checked, even nothing: two intervals without a count is an alarm.
            self._monitored(
                "SweepNotRunning",
                name="sweep-not-running",
                description="The verification sweep has not completed a run in twice its interval: stored "
                "backups are not being re-read (docs/runbooks/drills.md).",
                metric=self._monitoring.metric(
                    Metric.SWEEP_BACKUPS_CHECKED,
                    Service.SWEEP,
                    None,
                    "SampleCount",
                    Duration.seconds(int(2 * config.sweep.every.total_seconds())),
                ),
                threshold=1,
                comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                missing=cloudwatch.TreatMissingData.BREACHING,
            )
        for metric_name, name, finding in (
            (Metric.SWEEP_MISMATCHES, "sweep-mismatch", "whose bytes differ from its manifest"),
            (Metric.SWEEP_UNREADABLE, "sweep-unreadable", "that could not be read twice in a row"),
            (Metric.SWEEP_OVERWRITTEN, "sweep-overwritten", "whose key serves another version than the backed-up one"),
        ):
            self._monitored(
                metric_name.value,  # the construct id: the metric's name, as before
                name=name,
                description=f"The verification sweep found a stored backup {finding}: the alert names it "
                "(docs/runbooks/drills.md).",
                metric=self._monitoring.metric(metric_name, Service.SWEEP, None, "Sum", Duration.days(1)),
                threshold=0,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            )

    def _guard(
        self,
        config: Config,
        vault: BackupVault,
        runner: RunnerImage,
        monitoring: Monitoring,
        catalog: DatabaseCatalog,
    ) -> tuple[lambda_.IFunction, ScheduledInvocation]:
        """The keep-last-good guard: holds each database's newest good backups out of lifecycle's reach."""
        role = iam.Role(
            self,
            "GuardRole",
            description="Backstop keep-last-good guard: moves tier tags between <tier> and held-<tier>, nothing else",
            path=vault.guard_role_path,
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        vault.grant_guard(role, [db.name for db in config.databases])
        monitoring.grant_publish(role)  # the one alert of a run stopped at its deadline (backstop.deadline)
        catalog.grant_read(role)
        function = runner.function(
            self,
            "Guard",
            FunctionSpec(
                handler=GUARD_HANDLER,
                description="Backstop: holds the newest good backups of each database out of lifecycle's reach",
                role=role,
                environment={
                    # It writes no object: the vault's name, prefix and key, and the alerts topic.
                    **{k: v for k, v in monitoring.environment.items() if k in GUARD_ENVIRONMENT},
                    **catalog.environment,  # the databases and their retention
                },
                memory_mb=512,
                timeout_seconds=900,
            ),
            label="guard",
        )
        schedule = ScheduledInvocation(
            self,
            "GuardSchedule",
            function=function,
            expression=rate_expression(GUARD_EVERY),
            timezone="UTC",
            payload=checked_at_input(),
            description="Backstop: keep-last-good guard",
            dead_letters=monitoring.dead_letters,
            dead_letter_key=monitoring.key,
        )
        return function, schedule

    def add_to(self, dashboard: cloudwatch.Dashboard, config: Config) -> None:
        """The drills' and the sweep's rows on the dashboard: drill durations against RTO, sweeps."""
        day = Duration.days(1)
        for db in config.databases:
            if db.drill is None:
                continue
            rto = db.drill.rto
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{db.name}: restore drill duration (s) and success",
                    left=[self._monitoring.metric(Metric.DRILL_DURATION, Service.DRILL, db.name, "Maximum", day)],
                    right=[self._monitoring.metric(Metric.DRILL_SUCCEEDED, Service.DRILL, db.name, "Minimum", day)],
                    left_annotations=[cloudwatch.HorizontalAnnotation(value=rto.total_seconds(), label="RTO")]
                    if rto
                    else None,
                    width=12,
                ),
                cloudwatch.GraphWidget(
                    title=f"{db.name}: age of the last successful drill (s)",
                    left=[
                        self._monitoring.metric(
                            Metric.LAST_SUCCESSFUL_DRILL_AGE, Service.FRESHNESS, db.name, "Maximum", day
                        )
                    ],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=2 * db.drill.every.total_seconds(), label="2 x cadence")
                    ],
                    width=12,
                ),
            )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Verification sweep: bytes re-read and mismatches",
                left=[self._monitoring.metric(Metric.SWEEP_BYTES_READ, Service.SWEEP, None, "Sum", day)],
                right=[self._monitoring.metric(Metric.SWEEP_MISMATCHES, Service.SWEEP, None, "Sum", day)],
                width=12,
            )
        )

    def _monitored(
        self,
        construct_id: str,
        *,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison: cloudwatch.ComparisonOperator,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
    ) -> None:
        """An alarm among Monitoring's (its topic, the dashboard's status); by default no drill today is not a
        failed one."""
        self.alarms.append(
            self._monitoring.alarm(
                construct_id,
                name=name,
                description=description,
                metric=metric,
                threshold=threshold,
                comparison_operator=comparison,
                treat_missing_data=missing,
            )
        )
