"""EventBridge Scheduler schedules that invoke a Backstop function, and the exact input each one sends.

The inputs are the runtime's own payload models (``backstop.events``). A schedule's input can be
edited, and anyone allowed to invoke a function can send it any event, so a database's backup and
drill schedules send its name and the scheduled time only (``scheduled_input``): what the function
trusts, where the database is and its secret's ARN, is in the function's environment
(``database_environment``), which only a deployment sets. A freshness schedule sends every
database's name and ``stale_after``; the sweep's sends its time. None holds a secret: a server
database names its password by Secrets Manager ARN. ``events/`` holds these inputs for the example
configuration, and a test keeps them equal to the template.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from aws_cdk import Aws, Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from backstop.config import DEPLOYMENT_FIELDS, AnyDatabase, Config, format_duration

SCHEDULED_TIME = "<aws.scheduler.scheduled-time>"
"""Replaced by EventBridge Scheduler with the time the invocation was scheduled for (ISO 8601, UTC)."""

DELIVERY_RETRIES = 10
"""How often Scheduler retries a failed delivery (throttling, service errors) before the dead-letter queue."""

DELIVERY_WINDOW = Duration.hours(1)
"""How long Scheduler keeps trying to deliver one invocation before the dead-letter queue."""


def scheduled_input(database: str) -> dict[str, Any]:
    """What a database's backup or drill schedule sends: its name and Scheduler's time, nothing else
    (a ``ScheduledBackupEvent`` or ``ScheduledDrillEvent``)."""
    return {"database": {"name": database}, "scheduled_time": SCHEDULED_TIME}


BACKUP_LEAVES_OUT = DEPLOYMENT_FIELDS
"""What a backup function is not told: how the functions are deployed, where restores and drills go."""

DRILL_LEAVES_OUT = frozenset({"function", "vpc", "efs"})
"""What a drill function is not told: how the functions are deployed. It keeps the restore targets and
the drill itself, so the run refuses to drill into any of them."""


def database_environment(database: AnyDatabase, *, leave_out: Iterable[str]) -> dict[str, str]:
    """``BACKSTOP_DATABASE``: the database's configuration as written in backstop.yaml, minus ``leave_out``,
    for the function that serves it (``backstop.config.environment.DatabaseFunctionSettings``). No secret: a server
    database's password is named by its Secrets Manager ARN."""
    written = database.model_dump(mode="json", exclude_unset=True, exclude=set(leave_out))
    ordered = {"name": written.pop("name"), "engine": written.pop("engine"), **written}
    return {"BACKSTOP_DATABASE": json.dumps(ordered, separators=(",", ":"))}


def checked_at_input() -> dict[str, Any]:
    """What the sweep and guard schedules send: a ``SweepEvent`` or ``GuardEvent`` with Scheduler's time
    (their scope is their environment)."""
    return {"checked_at": SCHEDULED_TIME}


def freshness_input(config: Config) -> dict[str, Any]:
    """What the freshness schedule sends: a ``FreshnessCheckEvent`` naming every database and its threshold."""
    return {
        "databases": [
            {
                "name": db.name,
                "stale_after": format_duration(db.stale_after),
                **({"drill_every": format_duration(db.drill.every)} if db.drill is not None else {}),
            }
            for db in config.databases
        ],
        "checked_at": SCHEDULED_TIME,
    }


def rate_expression(every: timedelta) -> str:
    """``rate(...)`` for a whole number of minutes, in the largest unit that divides it."""
    minutes = int(every.total_seconds()) // 60
    for unit, size in (("day", 1440), ("hour", 60), ("minute", 1)):
        if minutes % size == 0:
            count = minutes // size
            return f"rate({count} {unit}{'s' if count > 1 else ''})"
    raise AssertionError("unreachable: every minute count is divisible by 1")


class ScheduledInvocation(Construct):
    """One schedule invoking one function with a fixed input; undeliverable invocations go to ``dead_letters``.

    Its role may invoke exactly that function and send to exactly that queue (with the queue's key).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        function: lambda_.IFunction,
        expression: str,
        timezone: str,
        payload: dict[str, Any],
        description: str,
        dead_letters: sqs.IQueue,
        dead_letter_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            description=f"EventBridge Scheduler: {description}",
            assumed_by=iam.ServicePrincipal(
                "scheduler.amazonaws.com",
                conditions={
                    "StringEquals": {
                        "aws:SourceAccount": Aws.ACCOUNT_ID,
                        "aws:SourceArn": f"arn:{Aws.PARTITION}:scheduler:{Aws.REGION}:{Aws.ACCOUNT_ID}"
                        ":schedule-group/default",
                    }
                },
            ),
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["lambda:InvokeFunction"], resources=[function.function_arn])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[dead_letters.queue_arn])
        )
        self.role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=[dead_letter_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{Aws.REGION}.amazonaws.com"}},
            )
        )
        self.schedule = scheduler.CfnSchedule(
            self,
            "Schedule",
            description=description,
            schedule_expression=expression,
            schedule_expression_timezone=timezone,
            flexible_time_window=scheduler.CfnSchedule.FlexibleTimeWindowProperty(mode="OFF"),
            state="ENABLED",
            target=scheduler.CfnSchedule.TargetProperty(
                arn=function.function_arn,
                role_arn=self.role.role_arn,
                input=json.dumps(payload, separators=(",", ":")),
                retry_policy=scheduler.CfnSchedule.RetryPolicyProperty(
                    maximum_event_age_in_seconds=DELIVERY_WINDOW.to_seconds(),
                    maximum_retry_attempts=DELIVERY_RETRIES,
                ),
                dead_letter_config=scheduler.CfnSchedule.DeadLetterConfigProperty(arn=dead_letters.queue_arn),
            ),
        )
        # Scheduler checks the role when the schedule is created: its policy must exist by then.
        policy = self.role.node.try_find_child("DefaultPolicy")
        if policy is None:  # the statements above created it
            raise RuntimeError(f"{self.role.node.path} has no default policy")
        self.schedule.node.add_dependency(policy)
