"""`make local`'s entry point, used from another shell as the README shows: source .local/env, then
the `aws` CLI starts a restore and `backstop approve` approves it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from local.demo import logical_digest
from tests.conftest import table_rows

pytestmark = pytest.mark.xdist_group("emulator")

BIN = Path(sys.executable).parent


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Path]:
    """`python -m local.serve` running in ``tmp_path``; yields the workspace once .local/env exists."""
    workspace = tmp_path / "local"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    server = subprocess.Popen(
        [sys.executable, "-m", "local.serve", "--workspace", str(workspace)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (workspace / "env").exists():
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"make local did not come up:\n{server.stdout.read() if server.stdout else ''}")
            time.sleep(0.2)
        yield workspace
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=60)
    assert server.returncode == 0, output
    assert not (workspace / "env").exists()  # removed on the way out: no stale endpoint


def shell(workspace: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``command`` in a bash that sourced .local/env (and has this venv's `aws` and `backstop` on its PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "BACKSTOP_"))}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    return subprocess.run(
        ["bash", "-c", f"set -euo pipefail; source {workspace / 'env'}; {command}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_restore_started_with_the_aws_cli_and_approved_with_backstop(served: Path) -> None:
    data = served / "data"
    staging = data / "staging" / "shop.db"
    env_text = (served / "env").read_text()
    for name in ("AWS_ENDPOINT_URL", "BACKSTOP_BUCKET", "BACKSTOP_STATE_MACHINE_ARN", "BACKSTOP_ALERTS_QUEUE_URL"):
        assert f"export {name}=" in env_text

    # given a backup of shop taken from the other shell, and staging holding other data
    backup_id = json.loads(ok(shell(served, "backstop backup shop --json")))["backup_id"]
    with closing(sqlite3.connect(staging)) as conn, conn:
        conn.execute("DELETE FROM order_lines")
    assert logical_digest(staging) != logical_digest(data / "shop.db")

    # when a restore into staging is started with the aws CLI
    document = {"database": "shop", "backup": "latest", "target": "staging", "requested_by": "t", "reason": "test"}
    started = ok(
        shell(
            served,
            'aws stepfunctions start-execution --state-machine-arn "$BACKSTOP_STATE_MACHINE_ARN" '
            f"--name local-1 --input '{json.dumps(document)}'",
        )
    )
    arn = json.loads(started)["executionArn"]

    # and approved with backstop once it waits for approval
    deadline = time.monotonic() + 60
    while "Approval" not in ok(shell(served, "backstop restore-status local-1")):
        assert time.monotonic() < deadline, "never reached the approval"
        time.sleep(0.5)
    ok(shell(served, f'backstop approve local-1 --confirm "RESTORE {backup_id}"'))

    # then the execution succeeds and staging holds the backup's data
    deadline = time.monotonic() + 90
    while True:
        status = json.loads(ok(shell(served, f"aws stepfunctions describe-execution --execution-arn '{arn}'")))
        if status["status"] != "RUNNING" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["status"] == "SUCCEEDED", status
    assert logical_digest(staging) == logical_digest(data / "shop.db")
    assert table_rows(staging)["order_lines"] == table_rows(data / "shop.db")["order_lines"]
    # and the plan and the outcome reached the alerts queue
    messages = json.loads(
        ok(
            shell(
                served,
                # AWS CLI v1 replaces AWS_ENDPOINT_URL by queue.amazonaws.com for SQS in us-east-1: name it explicitly
                'aws --endpoint-url "$AWS_ENDPOINT_URL" sqs receive-message '
                '--queue-url "$BACKSTOP_ALERTS_QUEUE_URL" --max-number-of-messages 10',
            )
        )
        or "{}"
    ).get("Messages", [])
    events = {json.loads(json.loads(m["Body"])["Message"])["event"] for m in messages}
    assert "restore_approval_requested" in events
