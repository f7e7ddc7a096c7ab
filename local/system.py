"""The whole Backstop system on the embedded emulator: the synthesized stack, stood up, its functions run here.

``local_system(config)`` synthesizes ``BackstopStack`` for the configuration (``emulated``: the
functions run on this machine, so local paths need no EFS), stands every resource the emulator
supports up from that template (``local.stack``), subscribes a queue to the alerts topic (the
stand-in for the e-mail subscriptions), and runs every Lambda invocation in this process with the
real handlers (``local.lambdas``). Nothing here describes the stack a second time: names, ARNs,
environments, schedules and their inputs are all read from the template.

Schedules never fire on the emulator. ``LocalSystem.tick`` invokes a schedule's function with the
exact input the template gives the schedule, its scheduled-time placeholder filled in, as
EventBridge Scheduler would.
"""

from __future__ import annotations

import os

# jsii reads this when aws_cdk is first imported (infra.schedules below imports it): Node 20 is what is here.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from backstop.config import Config
from infra.schedules import SCHEDULED_TIME
from local.emulator import Emulator, running
from local.lambdas import InvocationLog, in_process_lambdas
from local.stack import Deployed, stand_up

ALERTS_INBOX = "backstop-alerts-inbox"


@dataclass(frozen=True)
class Schedule:
    """One EventBridge Scheduler schedule of the template: what it invokes, when, and with what."""

    logical_id: str
    description: str
    expression: str
    function: str
    input: str

    def payload(self, at: datetime) -> dict[str, Any]:
        """The input as Scheduler sends it for an invocation scheduled at ``at``."""
        when = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        payload: dict[str, Any] = json.loads(self.input.replace(SCHEDULED_TIME, when))
        return payload


class InvocationFailedError(RuntimeError):
    """A function invoked by a tick raised; its error type and message, as Lambda reports them."""


@dataclass
class LocalSystem:
    """The stood-up stack: where everything is, and the ways to drive it."""

    emulator: Emulator
    template: dict[str, Any]
    deployed: Deployed
    invocations: InvocationLog
    outputs: dict[str, str]
    alerts_queue_url: str
    schedules: tuple[Schedule, ...]

    @property
    def bucket(self) -> str:
        return self.outputs["BucketName"]

    @property
    def state_machine_arn(self) -> str:
        return self.outputs["RestoreStateMachineArn"]

    @property
    def restore_table(self) -> str:
        return self.outputs["RestoreTableName"]

    def execution_arn(self, name: str) -> str:
        return self.state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{name}"

    def schedule_of(self, fragment: str) -> Schedule:
        """The one schedule whose description contains ``fragment`` (``backs up orders``, ``freshness``)."""
        (found,) = [s for s in self.schedules if fragment in s.description]
        return found

    def tick(self, schedule: Schedule, at: datetime, **changes: Any) -> Any:
        """Invoke ``schedule``'s function as Scheduler would at ``at`` (``changes`` override input keys)."""
        payload = {**schedule.payload(at), **changes}
        response = self.emulator.client("lambda").invoke(
            FunctionName=schedule.function, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
        )
        body = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            raise InvocationFailedError(f"{body.get('errorType')}: {body.get('errorMessage')}")
        return body

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts published since the last call (subject and message), in order."""
        return self.emulator.read_alerts(self.alerts_queue_url)

    def cli_config(self, config: Path) -> Path:
        """``config`` for the command line, beside it as ``<name>.cli.yaml``: the stack's key and alerts topic
        added from its outputs, as docs/deploy.md says to copy them."""
        document = yaml.safe_load(config.read_text())  # JSON is YAML too
        document.update(kms_key_id=self.outputs["KeyArn"], alerts_topic_arn=self.outputs["AlertsTopicArn"])
        cli = config.with_name(f"{config.stem}.cli.yaml")
        cli.write_text(yaml.safe_dump(document, sort_keys=False))
        return cli

    def environment(self) -> dict[str, str]:
        """The variables a shell needs to use the `aws` CLI and `backstop` against this system."""
        env = {k: v for k, v in self.emulator.env.items() if k != "MOTO_PORT"}
        return {
            **env,
            "BACKSTOP_BUCKET": self.bucket,
            "BACKSTOP_STATE_MACHINE_ARN": self.state_machine_arn,
            "BACKSTOP_RESTORE_TABLE": self.restore_table,
            "BACKSTOP_APPROVAL_FUNCTION": self.outputs["ApprovalFunctionName"],
            "BACKSTOP_ALERTS_TOPIC_ARN": self.outputs["AlertsTopicArn"],
            "BACKSTOP_ALERTS_QUEUE_URL": self.alerts_queue_url,
        }


def synthesize(config: Config) -> dict[str, Any]:
    """``BackstopStack``'s template for ``config``, as the emulator runs it (no AWS call, no Docker)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.stack import BackstopStack

    stack = BackstopStack(App(), config.stack_name, config=config, emulated=True)
    return dict(Template.from_stack(stack).to_json())


def schedules_of(template: dict[str, Any], deployed: Deployed) -> tuple[Schedule, ...]:
    found = []
    for logical, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Scheduler::Schedule":
            continue
        props = resource["Properties"]
        target = deployed.resolve(props["Target"])
        found.append(
            Schedule(
                logical_id=logical,
                description=str(props.get("Description", logical)),
                expression=str(props["ScheduleExpression"]),
                function=str(target["Arn"]).rsplit(":", 1)[1],
                input=str(target["Input"]),
            )
        )
    return tuple(found)


@contextmanager
def local_system(
    config: Config, template: dict[str, Any] | None = None, *, log_dir: Path | None = None
) -> Iterator[LocalSystem]:
    """Start the emulator, stand the stack of ``config`` up on it, and run its functions in-process.

    With ``log_dir``, each function's output (its CloudWatch Logs, in AWS) goes to a file there.
    """
    template = template or synthesize(config)
    with running() as emulator:
        emulator.execute_workflows()
        deployed = stand_up(emulator, template)
        outputs = {name: str(deployed.resolve(o["Value"])) for name, o in template.get("Outputs", {}).items()}
        sns, sqs = emulator.client("sns"), emulator.client("sqs")
        inbox = sqs.create_queue(QueueName=ALERTS_INBOX)["QueueUrl"]
        inbox_arn = sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=outputs["AlertsTopicArn"], Protocol="sqs", Endpoint=inbox_arn)
        with in_process_lambdas(extra_env=emulator.env, log_dir=log_dir) as invocations:
            yield LocalSystem(
                emulator=emulator,
                template=template,
                deployed=deployed,
                invocations=invocations,
                outputs=outputs,
                alerts_queue_url=str(inbox),
                schedules=schedules_of(template, deployed),
            )
