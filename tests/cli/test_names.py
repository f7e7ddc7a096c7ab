"""Hostile database names and backup ids are refused by the allow-list before any AWS call.

No moto here: AWS_ENDPOINT_URL points at a local HTTP listener that records every request it gets
and answers 403. A rejected name must leave it with no request at all; the control test shows the
listener does see the requests a valid name makes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from backstop.cli import main

DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message><RequestId>1</RequestId></Error>"
)


class RecordingEndpoint(BaseHTTPRequestHandler):
    """Records the method and path of every request, and refuses it the way S3 would."""

    requests: list[str]

    def _deny(self) -> None:
        self.requests.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.send_response(403)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(DENIED)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(DENIED)

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _deny

    def log_message(self, format: str, *args: object) -> None:  # the base class's signature
        pass


@pytest.fixture(scope="module")
def recording_server() -> Iterator[tuple[str, list[str]]]:
    """One listener for the module: its URL and the requests it received."""
    received: list[str] = []
    handler = type("Handler", (RecordingEndpoint,), {"requests": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def endpoint(recording_server: tuple[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """AWS_ENDPOINT_URL at the recording listener; the list of requests it receives during this test."""
    url, received = recording_server
    received.clear()
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    return received


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "backstop.yaml"
    data = {
        "bucket": "backstop-test",
        "work_dir": str(tmp_path),
        "databases": [{"name": "orders", "engine": "sqlite", "path": str(tmp_path / "orders.db")}],
    }
    path.write_text(yaml.safe_dump(data))
    return path


def invoke(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--config", str(config_file), *args])


HOSTILE_NAMES = {
    "dot-dot": "../x",
    "slash": "a/b",
    "empty": "",
    "1-kb": "a" * 1024,
    "nul": "orders\x00",
    "newline": "orders\nrm -rf /",
    "upper-case": "Orders",
}

DATABASE_COMMANDS = {
    "backup": ["backup", "{name}"],
    "list": ["list", "{name}"],
    "show": ["show", "{name}", "latest"],
    "verify": ["verify", "{name}"],
    "download": ["download", "{name}", "latest", "--out", "x.bin"],
    "restore": ["restore", "{name}", "--to", "x.db", "--dry-run"],
    "stats": ["stats", "{name}"],
}


def assert_one_sentence_refusal(result: Result, what: str) -> None:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if "rror" in line]
    assert len(errors) == 1, result.stderr
    assert what in errors[0]
    assert len(result.stderr) < 600  # a 1 KB name is shown shortened, never echoed whole


@pytest.mark.parametrize("command", sorted(DATABASE_COMMANDS))
@pytest.mark.parametrize("name", sorted(HOSTILE_NAMES))
def test_a_hostile_database_name_is_refused_before_any_aws_call(
    name: str, command: str, config_file: Path, endpoint: list[str]
) -> None:
    # given a command given a database name outside the allow-list
    args = [a.format(name=HOSTILE_NAMES[name]) for a in DATABASE_COMMANDS[command]]

    # when it runs
    result = invoke(config_file, *args)

    # then it fails with one sentence naming the problem, and AWS never heard of it
    assert_one_sentence_refusal(result, "Invalid database name")
    assert endpoint == []


BACKUP_ID_COMMANDS = {
    "show": ["show", "orders", "{id}"],
    "verify": ["verify", "orders", "{id}"],
    "download": ["download", "orders", "{id}", "--out", "x.bin"],
    "restore": ["restore", "orders", "{id}", "--to", "x.db", "--dry-run"],
}

HOSTILE_IDS = {
    **HOSTILE_NAMES,
    "traversal-after-id": "orders-20261121T020000Z/../../x",
    "other-database": "ledger-20261121T020000Z",
    "impossible-time": "orders-20261399T250000Z",
}


@pytest.mark.parametrize("command", sorted(BACKUP_ID_COMMANDS))
@pytest.mark.parametrize("backup_id", sorted(HOSTILE_IDS))
def test_a_hostile_backup_id_is_refused_before_any_aws_call(
    backup_id: str, command: str, config_file: Path, endpoint: list[str]
) -> None:
    # given a command given a backup id that `backstop list` could never have printed
    args = [a.format(id=HOSTILE_IDS[backup_id]) for a in BACKUP_ID_COMMANDS[command]]

    # when it runs
    result = invoke(config_file, *args)

    # then it fails with one sentence, and AWS never heard of it
    assert_one_sentence_refusal(result, "ackup id")
    assert endpoint == []


def test_control_a_valid_name_does_reach_the_endpoint(config_file: Path, endpoint: list[str]) -> None:
    # given a valid database name and the same recording endpoint
    # when a command that needs the bucket runs
    result = invoke(config_file, "list", "orders")

    # then the endpoint saw the request (so an empty record above means no request was made),
    # and the refusal is reported as one sentence, not a traceback
    assert endpoint != []
    assert all("/backstop-test" in request for request in endpoint)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert "S3 answered AccessDenied" in result.stderr
    assert "Traceback" not in result.output
