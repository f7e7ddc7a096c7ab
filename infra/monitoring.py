"""Monitoring: the alerts topic and its key, dead letters, failure alerts, the freshness check, alarms, a dashboard.

How a failure reaches a person:

- A backup that fails (error, timeout, out of memory) after Lambda's retries: the function's
  OnFailure destination invokes the failure-alert function, which publishes to the topic.
- An invocation Scheduler could not deliver: the schedule's dead-letter queue; the failure-alert
  function consumes it and publishes.
- A database whose newest backup is older than ``stale_after``, or that has none: the freshness
  function (on its own schedule) publishes, and a CloudWatch alarm per database fires too, from the
  metric the check emits. That alarm treats missing data as breaching, so it also fires when the
  freshness check itself stops running.
- The alerting path failing (the failure-alert or freshness function erroring, dead letters left
  unprocessed): CloudWatch alarms, which publish to the topic without any function in between.

The topic is encrypted with a customer key whose policy lets CloudWatch and EventBridge use it (an
alarm cannot publish to a topic whose key it may not use), and the topic policy lets them publish
from this account only. Metric names and dimensions are the handlers' (``backstop.observability``: the
namespace, the ``Metric`` names, the ``service`` dimension from the handler's ``Service``, plus ``database``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from backstop.config import Config, Replica, format_duration
from backstop.observability import NAMESPACE, Metric, Service
from infra.backup_vault import REPLICATION_RULE, BackupVault, replica_reader_path
from infra.runner import FAILURE_ALERT_HANDLER, FRESHNESS_HANDLER, FunctionSpec, RunnerImage
from infra.schedules import ScheduledInvocation, freshness_input, rate_expression

PUBLISHING_SERVICES = ("cloudwatch.amazonaws.com", "events.amazonaws.com")
"""Services that publish to the alerts topic on their own: CloudWatch alarms and EventBridge rules."""


@dataclass(frozen=True)
class WatchedBackup:
    """A database's backup function, for the dashboard."""

    database: str
    function: lambda_.IFunction


class Monitoring(Construct):
    """Alerts topic, dead letters, failure-alert and freshness functions, alarms and the dashboard."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: Config, vault: BackupVault, runner: RunnerImage
    ) -> None:
        super().__init__(scope, construct_id)
        self._config = config
        self.key = kms.Key(
            self,
            "Key",
            description="Backstop: encrypts the alerts topic and the dead-letter queue",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsAndRulesToPublishToTheEncryptedTopic",
                principals=[iam.ServicePrincipal(service) for service in PUBLISHING_SERVICES],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" is this key
            )
        )
        self.topic = sns.Topic(self, "Topic", display_name="Backstop alerts", master_key=self.key, enforce_ssl=True)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowAlarmsAndRulesOfThisAccountToPublish",
                principals=[iam.ServicePrincipal(service) for service in PUBLISHING_SERVICES],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        for email in config.alerts.emails:
            self.topic.add_subscription(subscriptions.EmailSubscription(email))

        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=self.key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            visibility_timeout=Duration.minutes(5),
        )
        queue = self.dead_letters.node.default_child
        if queue is None:  # an L2 Queue always has its CfnQueue; this keeps mypy honest
            raise RuntimeError("the dead-letter queue has no CloudFormation resource")
        Validations.of(queue).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SQS3",
                reason="This queue is itself the dead-letter queue of the schedules (Scheduler's DeadLetterConfig, "
                "which cdk-nag does not see as a redrive policy); its messages become alerts, and the age alarm "
                "fires on any that cannot.",
            )
        )

        self.environment = {
            "BACKSTOP_BUCKET": vault.bucket.bucket_name,
            "BACKSTOP_PREFIX": config.prefix,
            "BACKSTOP_KMS_KEY_ID": vault.key.key_arn,
            "BACKSTOP_ALERTS_TOPIC_ARN": self.topic.topic_arn,
        }
        """The environment of the functions that read or write the vault (``config.environment.FunctionSettings``)."""
        if config.storage.object_lock is not None:
            # What a backup is written with: each artifact and manifest locked until its tier expires.
            self.environment["BACKSTOP_OBJECT_LOCK"] = config.storage.object_lock.model_dump_json()

        failure_role = iam.Role(
            self,
            "FailureAlertRole",
            description="Backstop failure-alert function: publishes alerts, reads dead letters",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        )
        self.grant_publish(failure_role)
        self.failure_alert = runner.function(
            self,
            "FailureAlert",
            FunctionSpec(
                handler=FAILURE_ALERT_HANDLER,
                description="Backstop: turns failed backups and dead letters into alerts",
                role=failure_role,
                environment={"BACKSTOP_ALERTS_TOPIC_ARN": self.topic.topic_arn},
                timeout_seconds=60,
            ),
            label="failure-alert",
        )
        # One message per invocation: a message that cannot be turned into an alert stays in the
        # queue on its own (and the dead-letter age alarm fires) instead of holding others back.
        self.failure_alert.add_event_source(event_sources.SqsEventSource(self.dead_letters, batch_size=1))

        replica = config.storage.replica
        freshness_role = iam.Role(
            self,
            "FreshnessRole",
            description="Backstop freshness check: lists each database's backups, reads manifests, alerts",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            # The replica's bucket and key policies let the vault's roles on this path read its manifests.
            path=replica_reader_path(Stack.of(self).stack_name) if replica is not None else None,
        )
        vault.grant_read_manifests(
            freshness_role,
            [db.name for db in config.databases],
            drilled=[db.name for db in config.databases if db.drill is not None],
        )
        freshness_environment = dict(self.environment)
        if replica is not None:
            vault.grant_read_replica_manifests(freshness_role, replica, [db.name for db in config.databases])
            freshness_environment["BACKSTOP_REPLICA"] = replica.model_dump_json(
                include={"bucket", "region", "allowed_lag"}
            )
        self.grant_publish(freshness_role)
        self.freshness = runner.function(
            self,
            "Freshness",
            FunctionSpec(
                handler=FRESHNESS_HANDLER,
                description="Backstop: alerts when a database's newest backup is older than its stale_after",
                role=freshness_role,
                environment=freshness_environment,
                timeout_seconds=300,
            ),
            label="freshness",
        )
        self.freshness_schedule = ScheduledInvocation(
            self,
            "FreshnessSchedule",
            function=self.freshness,
            expression=rate_expression(config.freshness.every),
            timezone="UTC",
            payload=freshness_input(config),
            description="Backstop: checks that every database has a recent backup",
            dead_letters=self.dead_letters,
            dead_letter_key=self.key,
        )

        self.alarms: list[cloudwatch.Alarm] = []
        self._alarm_on_config()

    def grant_publish(self, role: iam.IRole) -> None:
        """Let ``role`` publish to the alerts topic, which includes using its key through SNS."""
        role.add_to_principal_policy(iam.PolicyStatement(actions=["sns:Publish"], resources=[self.topic.topic_arn]))
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sns.{Aws.REGION}.amazonaws.com"}},
            )
        )

    # -- alarms ---------------------------------------------------------------------------------

    def alarm(
        self,
        construct_id: str,
        *,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        comparison_operator: cloudwatch.ComparisonOperator,
        treat_missing_data: cloudwatch.TreatMissingData,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_name=f"{Stack.of(self).stack_name}-{name}",
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison_operator,
            treat_missing_data=treat_missing_data,
            evaluation_periods=1,
            datapoints_to_alarm=1,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms.append(alarm)
        return alarm

    def _alarm_on_config(self) -> None:
        # Twice the check's interval: one late run must not raise a false alarm, two missed runs must.
        window = Duration.seconds(min(2 * int(self._config.freshness.every.total_seconds()), 86400))
        for db in self._config.databases:
            self.alarm(
                f"{db.name}Stale",
                name=f"{db.name}-backup-stale",
                description=f"The newest backup of {db.name} is older than {format_duration(db.stale_after)}, "
                "there is none, or the freshness check stopped reporting: read the backup function's logs.",
                metric=self.newest_backup_age(db.name, window),
                threshold=db.stale_after.total_seconds(),
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )
            self.alarm(
                f"{db.name}SizeAnomaly",
                name=f"{db.name}-backup-size-anomaly",
                description=f"A backup of {db.name} is far smaller or larger than the recent ones: check that the "
                "database was not emptied or truncated before trusting it.",
                metric=self.metric(Metric.BACKUP_SIZE_ANOMALY, Service.BACKUP, db.name, "Sum", Duration.minutes(5)),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        if self._config.storage.replica is not None:
            self._alarm_on_replica(self._config.storage.replica, window)
        for construct_id, name, function in (
            ("FailureAlertErrors", "failure-alert", self.failure_alert),
            ("FreshnessErrors", "freshness", self.freshness),
        ):
            self.alarm(
                construct_id,
                name=f"{name}-errors",
                description=f"The {name} function failed, so alerts may be missing: read its logs.",
                metric=function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
        self.alarm(
            "DeadLettersUnprocessed",
            name="dead-letters-unprocessed",
            description="A schedule's undeliverable invocation has waited over an hour in the dead-letter queue: "
            "the failure-alert function cannot process it. Read the message and the function's logs.",
            metric=self.dead_letters.metric_approximate_age_of_oldest_message(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=3600,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    def alarm_on_errors(self, functions: Sequence[tuple[str, lambda_.IFunction]]) -> None:
        """A ``<name>-errors`` alarm for every function that has none yet: a crash or a timeout is never silent."""
        watched = {id(self.failure_alert), id(self.freshness)}
        for name, function in functions:
            if id(function) in watched:
                continue
            watched.add(id(function))
            self.alarm(
                f"{''.join(word.capitalize() for word in name.split('-'))}Errors",
                name=f"{name}-errors",
                description=f"The {name} function failed or timed out: read its logs (its own alert, if any, "
                "says why; a timeout or a crash sends none).",
                metric=function.metric_errors(period=Duration.minutes(5), statistic="Sum"),
                threshold=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )

    def _alarm_on_replica(self, replica: Replica, window: Duration) -> None:
        for db in self._config.databases:
            stale_after = db.stale_after + replica.allowed_lag
            self.alarm(
                f"{db.name}ReplicaStale",
                name=f"{db.name}-replica-stale",
                description=f"The replica s3://{replica.bucket} holds no backup of {db.name} newer than "
                f"{format_duration(stale_after)} (stale_after + storage.replica.allowed_lag), or the freshness "
                "check cannot read it: check the vault's replication rule and the replica (docs/storage.md).",
                metric=self.metric(Metric.REPLICA_BACKUP_AGE, Service.FRESHNESS, db.name, "Maximum", window),
                threshold=stale_after.total_seconds(),
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.BREACHING,
            )
        self.alarm(
            "ReplicationFailed",
            name="replication-failed",
            description=f"S3 could not replicate a version of s3://{self._config.bucket} into s3://{replica.bucket}: "
            "read the replication failure events, then check the replication role, the replica's key and policy.",
            metric=cloudwatch.Metric(
                namespace="AWS/S3",
                metric_name="OperationsFailedReplication",
                dimensions_map={
                    "SourceBucket": self._config.bucket,
                    "DestinationBucket": replica.bucket,
                    "RuleId": REPLICATION_RULE,
                },
                statistic="Sum",
                period=Duration.minutes(15),
            ),
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

    @staticmethod
    def metric(
        name: Metric, service: Service, database: str | None, statistic: str, period: Duration
    ) -> cloudwatch.Metric:
        """The handlers' metric ``name`` of ``service`` (of ``database``, or the whole run's when None)."""
        dimensions = {"service": service} if database is None else {"service": service, "database": database}
        return cloudwatch.Metric(
            namespace=NAMESPACE, metric_name=name, dimensions_map=dimensions, statistic=statistic, period=period
        )

    def newest_backup_age(self, database: str, period: Duration) -> cloudwatch.Metric:
        """The freshness check's ``Metric.NEWEST_BACKUP_AGE`` of ``database`` (its maximum over ``period``)."""
        return self.metric(Metric.NEWEST_BACKUP_AGE, Service.FRESHNESS, database, "Maximum", period)

    # -- dashboard ------------------------------------------------------------------------------

    def add_dashboard(self, backups: Sequence[WatchedBackup]) -> cloudwatch.Dashboard:
        """One dashboard for the whole system: alarm states, each database's backups, the alerting path."""
        day = Duration.days(1)
        dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{Stack.of(self).stack_name}-{Aws.REGION}",
            default_interval=Duration.days(14),
        )
        dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Backstop alarms", alarms=list(self.alarms), width=24, height=4)
        )
        for watched in backups:
            db = self._config.database(watched.database)
            dashboard.add_widgets(
                cloudwatch.GraphWidget(
                    title=f"{db.name}: newest backup age (s)",
                    left=[self.newest_backup_age(db.name, Duration.hours(1))],
                    left_annotations=[
                        cloudwatch.HorizontalAnnotation(value=db.stale_after.total_seconds(), label="stale_after")
                    ],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{db.name}: stored bytes per backup",
                    left=[self.metric(Metric.BACKUP_BYTES, Service.BACKUP, db.name, "Maximum", day)],
                    right=[self.metric(Metric.BACKUP_SIZE_ANOMALY, Service.BACKUP, db.name, "Sum", day)],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{db.name}: backup duration (s)",
                    left=[self.metric(Metric.BACKUP_DURATION, Service.BACKUP, db.name, "Maximum", day)],
                    right=[self.metric(Metric.BACKUP_COMMITTED, Service.BACKUP, db.name, "Sum", day)],
                    width=6,
                ),
                cloudwatch.GraphWidget(
                    title=f"{db.name}: function errors, throttles",
                    left=[
                        watched.function.metric_errors(period=day, statistic="Sum"),
                        watched.function.metric_throttles(period=day, statistic="Sum"),
                    ],
                    width=6,
                ),
            )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Stale, missing or unreadable databases",
                left=[self.metric(Metric.STALE_DATABASES, Service.FRESHNESS, None, "Maximum", Duration.hours(1))],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Failure alerts sent",
                # SEARCH: every database's series, whatever dimensions the failure-alert function adds.
                left=[
                    cloudwatch.MathExpression(
                        expression=f"SEARCH('{{{NAMESPACE}}} MetricName=\"{Metric.BACKUP_FAILURE_ALERTS}\"', "
                        "'Sum', 86400)",
                        label="",
                        period=day,
                    )
                ],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Dead letters and alerting errors",
                left=[
                    self.dead_letters.metric_approximate_number_of_messages_visible(period=Duration.hours(1)),
                    self.failure_alert.metric_errors(period=Duration.hours(1), statistic="Sum"),
                    self.freshness.metric_errors(period=Duration.hours(1), statistic="Sum"),
                ],
                width=8,
            ),
        )
        return dashboard
