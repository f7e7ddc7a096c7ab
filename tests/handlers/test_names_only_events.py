"""Scheduled events name a database; the configuration comes from the function's own deployment.

Whoever can invoke a backup or drill function, or edit its schedule, must not be able to point it at
a server of their choosing: the function would send that server the real password from its secret.
Every crafted event here is refused in one sentence before any secret is read or any server reached.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.client import BaseClient

from backstop.adapters.s3_store import S3Store
from backstop.errors import BackstopError
from backstop.handlers.backup import handler as backup_handler
from backstop.handlers.drill import handler as drill_handler
from tests.conftest import BUCKET, REGION
from tests.handlers import SENTINEL_SECRET, FakeContext, deploy_database

SCHEDULED_TIME = "2026-11-21T02:00:00Z"


@dataclass
class Attacker:
    """A server someone controls: it counts the connections it receives and closes each one at once."""

    port: int
    connections: list[tuple[str, int]] = field(default_factory=list)


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.05)
    found = Attacker(listener.getsockname()[1])
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, address = listener.accept()
            except TimeoutError:
                continue
            found.connections.append(address)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield found
    stop.set()
    thread.join()
    listener.close()


@pytest.fixture
def secret_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SecretId of every Secrets Manager GetSecretValue call any client makes during the test."""
    reads: list[str] = []
    original = BaseClient._make_api_call

    def spy(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if operation == "GetSecretValue":
            reads.append(str(params.get("SecretId")))
        return original(client, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", spy)
    parameters.clear_caches()  # a value cached by another test would hide a read
    return reads


@pytest.fixture
def secret_arn(s3: Any) -> str:
    """billing's real password, in Secrets Manager (moto)."""
    secrets = boto3.client("secretsmanager", region_name=REGION)
    arn: str = secrets.create_secret(Name="backstop/billing", SecretString=SENTINEL_SECRET)["ARN"]
    return arn


@pytest.fixture
def billing(s3: Any, secret_arn: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The deployed backup or drill function of billing (PostgreSQL): its configuration is in its environment."""
    database = {
        "name": "billing",
        "engine": "postgres",
        "host": "billing.db.internal",
        "dbname": "billing",
        "user": "backstop",
        "password_secret": secret_arn,
        "drill": {"server": {"host": "scratch.db.internal", "user": "backstop", "password_secret": secret_arn}},
    }
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Backstop")
    deploy_database(monkeypatch, database)
    return database


def crafted(kind: str, attacker: Attacker, secret_arn: str) -> dict[str, Any]:
    """An event someone wrote to reach their own server with billing's password, or another database."""
    theirs = {"host": "127.0.0.1", "port": attacker.port, "user": "backstop", "password_secret": secret_arn}
    events: dict[str, dict[str, Any]] = {
        "database-object-with-host": {
            "database": {"name": "billing", "engine": "postgres", "dbname": "billing", "connect_timeout": "2s"}
            | theirs,
            "scheduled_time": SCHEDULED_TIME,
        },
        "database-object-with-drill-server": {  # the drill's scratch server: where a drill sends the password
            "database": {
                "name": "billing",
                "engine": "postgres",
                "host": "billing.db.internal",
                "dbname": "billing",
                "user": "backstop",
                "drill": {"server": theirs},
            },
            "scheduled_time": SCHEDULED_TIME,
            "backup": "billing-20261121T020000Z",
        },
        "host-key": {"database": {"name": "billing"}, "host": "127.0.0.1", "scheduled_time": SCHEDULED_TIME},
        "unknown-database": {"database": {"name": "ledger"}, "scheduled_time": SCHEDULED_TIME},
    }
    return events[kind]


CRAFTED = ["database-object-with-host", "host-key", "unknown-database"]


def assert_refused_in_one_sentence(raised: pytest.ExceptionInfo[BackstopError]) -> None:
    message = str(raised.value)
    assert "refused" in message.lower(), message
    assert "\n" not in message and message.endswith("."), message
    assert SENTINEL_SECRET not in message


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize("kind", CRAFTED)
def test_a_crafted_backup_event_is_refused_before_any_secret_read_or_connection(
    kind: str,
    billing: dict[str, Any],
    attacker: Attacker,
    secret_arn: str,
    secret_reads: list[str],
    store: S3Store,
) -> None:
    # given billing's deployed backup function, and an event that tries to reach another server or database
    event = crafted(kind, attacker, secret_arn)

    # when the function is invoked with it
    with pytest.raises(BackstopError) as raised:
        backup_handler(event, FakeContext())  # type: ignore[arg-type]

    # then it is refused in one sentence, the secret was never read, nobody was connected to, nothing was written
    assert_refused_in_one_sentence(raised)
    assert secret_reads == []
    assert attacker.connections == []
    assert store.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
@pytest.mark.parametrize(
    "kind", ["database-object-with-drill-server", *CRAFTED[1:], "backup-of-another-database", "not-a-backup-id"]
)
def test_a_crafted_drill_event_is_refused_before_any_secret_read_or_connection(
    kind: str,
    billing: dict[str, Any],
    attacker: Attacker,
    secret_arn: str,
    secret_reads: list[str],
    store: S3Store,
) -> None:
    # given billing's deployed drill function, and an event that names another server, database or backup
    if kind == "backup-of-another-database":
        event = {"database": {"name": "billing"}, "scheduled_time": SCHEDULED_TIME, "backup": "orders-20261121T020000Z"}
    elif kind == "not-a-backup-id":
        event = {"database": {"name": "billing"}, "scheduled_time": SCHEDULED_TIME, "backup": "../../etc/passwd"}
    else:
        event = crafted(kind, attacker, secret_arn)

    # when the drill function is invoked with it
    with pytest.raises(BackstopError) as raised:
        drill_handler(event, FakeContext())  # type: ignore[arg-type]

    # then it is refused in one sentence, before any secret read, connection or drill record
    assert_refused_in_one_sentence(raised)
    assert secret_reads == []
    assert attacker.connections == []
    assert store.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


@pytest.mark.filterwarnings("ignore:No application metrics to publish")
def test_a_backup_event_dated_in_the_future_is_refused_and_writes_nothing(
    s3: Any, tmp_path: Path, store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the deployed backup function of a SQLite database
    source = tmp_path / "orders.db"
    source.write_bytes(b"")
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    deploy_database(monkeypatch, {"name": "orders", "engine": "sqlite", "path": str(source)})

    # when its schedule (or someone) sends a time decades ahead
    event = {"database": {"name": "orders"}, "scheduled_time": "2099-01-01T00:00:00Z"}
    with pytest.raises(BackstopError) as raised:
        backup_handler(event, FakeContext())  # type: ignore[arg-type]

    # then it is refused in one sentence saying so, and no backup, lock or failure record exists
    message = str(raised.value)
    assert "future" in message and "\n" not in message, message
    assert store.client.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
