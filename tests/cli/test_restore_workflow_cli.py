"""`backstop approve|restores` against the restore table on moto (executions: see the workflow tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from click.testing import CliRunner

from backstop.cli import main
from backstop.restore_table import PendingApproval, RestoreTable
from tests.conftest import REGION
from tests.store.test_restore_table import create_table

TABLE = "backstop-restores"
BACKUP = "orders-20261121T020000Z"


@pytest.fixture
def table(s3: Any, monkeypatch: pytest.MonkeyPatch) -> RestoreTable:
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client)
    monkeypatch.setenv("BACKSTOP_RESTORE_TABLE", TABLE)
    restore_table = RestoreTable(client, TABLE)
    restore_table.put_approval(
        PendingApproval("exec-1", "secret-token-value", "orders", "staging", BACKUP, "alice"),
        datetime.now(UTC) + timedelta(hours=1),
    )
    restore_table.put_audit("exec-1", {"started_at": "2026-11-22T10:00:00+00:00", "database": "orders"})
    return restore_table


def test_approve_with_a_wrong_phrase_exits_1_and_stays_pending(table: RestoreTable) -> None:
    result = CliRunner().invoke(main, ["approve", "exec-1", "--confirm", "RESTORE latest"])
    assert result.exit_code == 1
    assert f"type exactly 'RESTORE {BACKUP}'" in result.stderr and "stays pending" in result.stderr
    assert "secret-token-value" not in result.output + result.stderr
    assert table.pending("exec-1").backup_id == BACKUP


def test_approve_of_an_unknown_execution_is_one_sentence(table: RestoreTable) -> None:
    result = CliRunner().invoke(main, ["approve", "exec-9", "--confirm", f"RESTORE {BACKUP}"])
    assert result.exit_code == 1
    assert "No approval is pending for exec-9" in result.stderr


def test_approve_needs_the_table(table: RestoreTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKSTOP_RESTORE_TABLE")
    result = CliRunner().invoke(main, ["approve", "exec-1", "--confirm", f"RESTORE {BACKUP}"])
    assert result.exit_code == 2 and "--table" in result.stderr


def test_restores_lists_the_audit_trail(table: RestoreTable) -> None:
    result = CliRunner().invoke(main, ["restores", "--json"])
    assert result.exit_code == 0, result.output
    assert '"execution": "exec-1"' in result.stdout
    assert "secret-token-value" not in result.stdout


def test_approve_refuses_the_requester_when_the_deployment_requires_another_person(table: RestoreTable) -> None:
    # given a restore requested by the identity this shell runs as, under a config with distinct_approver
    me = boto3.client("sts", region_name=REGION).get_caller_identity()["Arn"]
    table.put_approval(
        PendingApproval("exec-2", "other-token", "orders", "staging", BACKUP, me, distinct_approver=True),
        datetime.now(UTC) + timedelta(hours=1),
    )

    # when the same identity approves from the command line (which does not read the config)
    result = CliRunner().invoke(main, ["approve", "exec-2", "--confirm", f"RESTORE {BACKUP}"])

    # then it is refused, and the restore still waits for someone else
    assert result.exit_code == 1
    assert "another person must" in result.stderr
    assert table.pending("exec-2").requested_by == me
