"""The embedded AWS: moto in server mode inside this process, reachable over HTTP by boto3 and the `aws` CLI.

Used by `make demo` and the end-to-end tests. Because the server runs in this process, faults can
be injected into what it stores (``flip_byte``, ``truncate``): the same damage bit rot or a
botched copy would do to an object version at rest, which the S3 API itself cannot produce.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.s3.models import s3_backends

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass
class Emulator:
    """A running moto server and the environment that points AWS clients at it."""

    endpoint: str
    env: dict[str, str] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        return boto3.client(  # type: ignore[call-overload]  # service names are chosen at run time
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
        )

    def _post(self, path: str, body: dict[str, Any] | None = None) -> None:
        request = urllib.request.Request(  # noqa: S310 - our own loopback server, http only
            f"{self.endpoint}{path}",
            data=json.dumps(body or {}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - our own loopback server
            response.read()

    def reset(self) -> None:
        """Forget every resource: moto's backends live in this process and outlive one server."""
        self._post("/moto-api/reset")

    def execute_workflows(self) -> None:
        """Make Step Functions really execute, with Lambda functions run without Docker.

        moto's state machine interpreter calls other services at ``localhost:$MOTO_PORT``, read
        from this process's environment, so it is set here too.
        """
        os.environ["MOTO_PORT"] = self.env["MOTO_PORT"]
        logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)  # it logs every failure loudly
        self._post(
            "/moto-api/config", {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}
        )

    def create_bucket(self, name: str) -> None:
        """A versioned bucket, as the stack deploys it."""
        s3 = self.client("s3")
        s3.create_bucket(Bucket=name)
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})

    def create_key(self) -> str:
        return str(self.client("kms").create_key(Description="backstop backups")["KeyMetadata"]["Arn"])

    def create_alerts(self) -> tuple[str, str]:
        """An alerts topic with a queue subscribed to it (how the demo reads alerts); returns (topic, queue url)."""
        sns, sqs = self.client("sns"), self.client("sqs")
        topic = sns.create_topic(Name="backstop-alerts")["TopicArn"]
        queue = sqs.create_queue(QueueName="backstop-alerts")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
        return str(topic), str(queue)

    def read_alerts(self, queue_url: str) -> list[dict[str, Any]]:
        """Alerts delivered so far (each: subject and the JSON message), removed from the queue."""
        sqs = self.client("sqs")
        alerts: list[dict[str, Any]] = []
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return alerts
            for message in messages:
                envelope = json.loads(message["Body"])
                alerts.append({"subject": envelope.get("Subject"), "message": json.loads(envelope["Message"])})
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


def _stored_version(bucket: str, key: str, version_id: str | None) -> Any:
    fake_bucket = s3_backends[ACCOUNT]["aws"].buckets[bucket]
    for candidate in fake_bucket.keys.getlist(key):
        if version_id is None or str(candidate.version_id) == version_id:
            return candidate
    raise KeyError(f"{key} version {version_id} is not stored in {bucket}")


def flip_byte(bucket: str, key: str, version_id: str | None, offset: int = 100) -> None:
    """Invert one byte of a stored object version in place, leaving its recorded checksums as they were."""
    stored = _stored_version(bucket, key, version_id)
    data = bytearray(stored.value)
    data[offset % len(data)] ^= 0xFF
    stored.value = bytes(data)


def truncate(bucket: str, key: str, version_id: str | None, keep: int) -> None:
    """Cut a stored object version to its first ``keep`` bytes."""
    stored = _stored_version(bucket, key, version_id)
    stored.value = bytes(stored.value[:keep])


@contextmanager
def running() -> Iterator[Emulator]:
    """Start moto on a free loopback port; yields the emulator and stops it afterwards."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "backstop-local",
        "AWS_SECRET_ACCESS_KEY": "backstop-local",  # the emulator accepts any credentials
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "MOTO_PORT": str(port),
    }
    emulator = Emulator(endpoint=endpoint, env=env)
    emulator.reset()
    try:
        yield emulator
    finally:
        server.stop()


def child_env(emulator: Emulator, **extra: str) -> dict[str, str]:
    """This process's environment pointed at the emulator, for `backstop` and `aws` subprocesses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, **emulator.env, **extra}
