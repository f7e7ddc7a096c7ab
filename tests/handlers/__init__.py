"""Helpers of the handler tests: a Lambda context, the alert inbox, committed backups and emitted metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3

from backstop.adapters.s3_store import S3Store
from backstop.names import backup_id_for
from tests.conftest import BUCKET, REGION
from tests.unit.test_manifest import sample_manifest

EVENTS = Path(__file__).resolve().parents[2] / "events"
SENTINEL_SECRET = "sentinel-Qv7-never-forward"


@dataclass
class FakeContext:
    function_name: str = "backstop-function"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:backstop-function"
    aws_request_id: str = "req-1"
    remaining_ms: int = 300_000
    """The time left before the function's timeout when the run starts, which is how it learns its timeout."""
    tick_ms: int = 0
    """What each look at the time left costs: a clock that moves as the run checks it (0: time stands still)."""

    def get_remaining_time_in_millis(self) -> int:
        remaining = self.remaining_ms
        self.remaining_ms = max(0, remaining - self.tick_ms)
        return remaining


def deploy_database(monkeypatch: Any, database: dict[str, Any]) -> None:
    """Give the function under test the environment infra gives a database's own function: its configuration."""
    monkeypatch.setenv("BACKSTOP_DATABASE", json.dumps(database))


def load_event(relative: str) -> dict[str, Any]:
    """A sample from events/, as the function receives it."""
    data: dict[str, Any] = json.loads((EVENTS / relative).read_text())
    return data


@dataclass(frozen=True)
class AlertInbox:
    """An SNS topic with an SQS queue subscribed to it (moto): what an operator would receive."""

    topic_arn: str
    sqs: Any
    queue_url: str

    @classmethod
    def create(cls) -> AlertInbox:
        sns = boto3.client("sns", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        topic_arn = sns.create_topic(Name="backstop-alerts")["TopicArn"]
        queue_url = sqs.create_queue(QueueName="backstop-alerts-inbox")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)
        return cls(topic_arn, sqs, queue_url)

    def envelopes(self) -> list[dict[str, Any]]:
        """Every SNS notification received so far (Subject, Message, ...), removed from the queue."""
        received: list[dict[str, Any]] = []
        while True:
            batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def alerts(self) -> list[dict[str, Any]]:
        """The alert bodies received so far (the JSON each Message holds)."""
        return [self.message(envelope) for envelope in self.envelopes()]

    @staticmethod
    def message(envelope: dict[str, Any]) -> dict[str, Any]:
        """The alert body of one notification."""
        body: dict[str, Any] = json.loads(envelope["Message"])
        return body


def commit_backup(store: S3Store, database: str, at: datetime, *, raw_size: int = 40960, size: int = 1234) -> str:
    """A committed backup of ``database`` at ``at``: its artifact, then its manifest."""
    backup_id = backup_id_for(database, at)
    key = store.object_key(backup_id, "sqlite.zst")
    store.client.put_object(Bucket=BUCKET, Key=key, Body=b"x" * 16)
    manifest = sample_manifest(backup_id, size=size)
    manifest = manifest.model_copy(update={"raw": manifest.raw.model_copy(update={"size": raw_size})}).sealed()
    assert store.put_manifest(manifest, {})
    return backup_id


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The CloudWatch EMF metrics powertools printed: name, value, unit, namespace and dimensions of each."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith("{"):
            continue
        document = json.loads(line)
        if "_aws" not in document:
            continue  # a log line
        for directive in document["_aws"]["CloudWatchMetrics"]:
            names = {name for dimension_set in directive["Dimensions"] for name in dimension_set}
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                found.append(
                    {
                        "name": metric["Name"],
                        "unit": metric["Unit"],
                        "value": value[0] if isinstance(value, list) and len(value) == 1 else value,
                        "namespace": directive["Namespace"],
                        "dimensions": {name: document[name] for name in names},
                    }
                )
    return found


def metric_values(stdout: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(dimensions, value) of every emission of metric ``name``."""
    return [(m["dimensions"], m["value"]) for m in emitted_metrics(stdout) if m["name"] == name]
