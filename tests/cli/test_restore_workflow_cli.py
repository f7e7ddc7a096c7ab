"""`backstop approve|reject|restores` from a shell: options, one-sentence refusals, the audit listing.

The approval function runs in-process on moto here, so a refusal travels the real path (the CLI
signs a proof, invokes the function, the function refuses); approvals that succeed run against
the synthesized state machine in tests/workflow and tests/e2e.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from click.testing import CliRunner
from moto import mock_aws

from backstop import bootstrap
from backstop.adapters.restore_table import RestoreTable
from backstop.cli import main
from backstop.handlers import approval as approval_handler
from backstop.ports import PendingApproval
from local.lambdas import in_process_lambdas
from tests.conftest import REGION
from tests.store.test_restore_table import create_table

TABLE = "backstop-restores"
BACKUP = "orders-20261121T020000Z"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:Backstop-restore"


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[RestoreTable]:
    with mock_aws(config={"lambda": {"use_docker": False}}):
        yield from _deployed(monkeypatch)


def _deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[RestoreTable]:
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client)
    key = boto3.client("kms", region_name=REGION).create_key(KeySpec="HMAC_256", KeyUsage="GENERATE_VERIFY_MAC")
    role = boto3.client("iam", region_name=REGION).create_role(RoleName="approval", AssumeRolePolicyDocument="{}")
    boto3.client("lambda", region_name=REGION).create_function(
        FunctionName="backstop-approval",
        Role=role["Role"]["Arn"],
        PackageType="Image",
        Code={"ImageUri": "backstop/runner:local"},
        ImageConfig={"Command": ["backstop.handlers.approval.handler"]},
        Environment={
            "Variables": {
                "BACKSTOP_RESTORE_TABLE": TABLE,
                "BACKSTOP_STATE_MACHINE_ARN": MACHINE,
                "BACKSTOP_APPROVAL_KEY_ARN": key["KeyMetadata"]["Arn"],
            }
        },
    )
    for name, value in {
        "BACKSTOP_RESTORE_TABLE": TABLE,
        "BACKSTOP_STATE_MACHINE_ARN": MACHINE,
        "BACKSTOP_APPROVAL_FUNCTION": "backstop-approval",
    }.items():
        monkeypatch.setenv(name, value)
    restore_table = RestoreTable(client, TABLE)
    restore_table.put_approval(
        PendingApproval("exec-1", "orders", "staging", BACKUP, "alice"), datetime.now(UTC) + timedelta(hours=1)
    )
    restore_table.put_audit("exec-1", {"started_at": "2026-11-22T10:00:00+00:00", "database": "orders"})
    bootstrap.clear_cache()
    with in_process_lambdas():
        yield restore_table
    bootstrap.clear_cache()


def test_approve_of_an_execution_that_is_not_waiting_is_one_sentence_and_changes_nothing(table: RestoreTable) -> None:
    # given a pending approval record but no such execution waiting on the state machine (a planted record)
    result = CliRunner().invoke(main, ["approve", "exec-1", "--confirm", f"RESTORE {BACKUP}"])

    # then the approval component refuses it: the record alone approves nothing
    assert result.exit_code == 1
    assert "There is no execution" in result.stderr and "UnauthorizedStepError" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert table.pending("exec-1").backup_id == BACKUP
    assert "approver" not in (table.audit("exec-1") or {})


def test_reject_of_an_execution_that_is_not_waiting_is_one_sentence(table: RestoreTable) -> None:
    result = CliRunner().invoke(main, ["reject", "exec-9", "--reason", "wrong backup"])
    assert result.exit_code == 1 and "There is no execution" in result.stderr


@pytest.mark.parametrize("variable", ["BACKSTOP_APPROVAL_FUNCTION", "BACKSTOP_STATE_MACHINE_ARN"])
def test_approve_needs_the_approval_function_and_the_state_machine(
    table: RestoreTable, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.delenv(variable)
    result = CliRunner().invoke(main, ["approve", "exec-1", "--confirm", f"RESTORE {BACKUP}"])
    assert result.exit_code == 2 and ("--approval-function" in result.stderr or "--state-machine" in result.stderr)


def test_approve_sends_a_proof_bound_to_the_execution_not_a_claimed_name(
    table: RestoreTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a record of what the CLI sends to the approval function
    sent: list[dict[str, Any]] = []
    original = approval_handler.handler

    def recording(event: dict[str, Any], context: Any) -> Any:
        sent.append(event)
        return original(event, context)

    monkeypatch.setattr(approval_handler, "handler", recording)
    CliRunner().invoke(main, ["approve", "exec-1", "--confirm", f"RESTORE {BACKUP}"])

    # then it carries a signed GetCallerIdentity request whose signature covers the intent, and no identity field
    (event,) = sent
    execution = MACHINE.replace(":stateMachine:", ":execution:") + ":exec-1"
    headers = {k.lower(): v for k, v in event["identity"]["headers"].items()}
    assert headers["x-backstop-intent"] == f"approve {execution}"
    assert "x-backstop-intent" in headers["authorization"]
    assert set(event) == {"action", "execution", "phrase", "identity"}
    assert "testing" not in json.dumps(event)  # the secret key itself never leaves the machine


def test_restores_lists_the_audit_trail(table: RestoreTable) -> None:
    result = CliRunner().invoke(main, ["restores", "--json"])
    assert result.exit_code == 0, result.output
    assert '"execution": "exec-1"' in result.stdout
