"""The restore table on moto DynamoDB: locks that exclude, expire and are kept; approvals answered once; audit."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backstop.adapters.restore_table import KIND_INDEX, RestoreTable
from backstop.errors import ApprovalNotPendingError, RestoreTableError, TargetLockedError
from backstop.ports import PendingApproval
from tests.conftest import REGION

TABLE = "backstop-restores"
NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def create_table(client: Any, name: str = TABLE) -> None:
    """The table as the stack creates it: pk/sk, the by-kind index, TTL on ``ttl``."""
    client.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "kind", "AttributeType": "S"},
            {"AttributeName": "started_at", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": KIND_INDEX,
                "KeySchema": [
                    {"AttributeName": "kind", "KeyType": "HASH"},
                    {"AttributeName": "started_at", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )


@pytest.fixture
def table() -> Iterator[RestoreTable]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client)
        yield RestoreTable(client, TABLE)


def test_a_lock_excludes_another_execution_and_names_the_holder(table: RestoreTable) -> None:
    table.acquire("orders", "staging", "exec-1", NOW, HOUR)
    with pytest.raises(TargetLockedError) as refused:
        table.acquire("orders", "staging", "exec-2", NOW + timedelta(minutes=5), HOUR)
    assert "exec-1" in str(refused.value)
    # other targets and databases are independent
    table.acquire("orders", "in-place", "exec-2", NOW, HOUR)
    table.acquire("uploads", "staging", "exec-3", NOW, HOUR)


def test_a_retried_acquire_by_the_same_execution_succeeds(table: RestoreTable) -> None:
    table.acquire("orders", "staging", "exec-1", NOW, HOUR)
    lock = table.acquire("orders", "staging", "exec-1", NOW + timedelta(seconds=30), HOUR)
    assert lock.owner == "exec-1"


def test_an_expired_lock_is_taken_over(table: RestoreTable) -> None:
    table.acquire("orders", "staging", "exec-1", NOW, HOUR)
    table.acquire("orders", "staging", "exec-2", NOW + 2 * HOUR, HOUR)
    assert (table.holder("orders", "staging") or {})["owner"] == "exec-2"


def test_release_only_frees_our_own_lock(table: RestoreTable) -> None:
    table.acquire("orders", "staging", "exec-1", NOW, HOUR)
    assert table.release("orders", "staging", "exec-2") is False
    assert (table.holder("orders", "staging") or {})["owner"] == "exec-1"
    assert table.release("orders", "staging", "exec-1") is True
    assert table.holder("orders", "staging") is None
    table.acquire("orders", "staging", "exec-2", NOW, HOUR)


def test_a_kept_lock_never_expires_and_is_not_released(table: RestoreTable) -> None:
    # given a lock kept after a failed rollback
    table.acquire("orders", "staging", "exec-1", NOW, HOUR)
    table.keep("orders", "staging", "exec-1", "rollback failed: disk full")

    # then neither its owner's release nor another execution long after its expiry frees it
    assert table.release("orders", "staging", "exec-1") is False
    with pytest.raises(TargetLockedError) as refused:
        table.acquire("orders", "staging", "exec-2", NOW + 1000 * HOUR, HOUR)
    assert "manual intervention needed" in str(refused.value)
    held = table.holder("orders", "staging") or {}
    assert held["kept"] is True and held["reason"] == "rollback failed: disk full"


def test_an_approval_is_answered_once_and_holds_no_token(table: RestoreTable) -> None:
    approval = PendingApproval("exec-1", "orders", "staging", "orders-20261121T020000Z", "alice")
    table.put_approval(approval, NOW + 24 * HOUR)
    assert table.pending("exec-1") == approval
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName=table.table, Key={"pk": {"S": "restore#exec-1"}, "sk": {"S": "approval"}}
    )["Item"]
    assert "token" not in item
    table.take_approval("exec-1")
    with pytest.raises(ApprovalNotPendingError):
        table.pending("exec-1")
    with pytest.raises(ApprovalNotPendingError):
        table.take_approval("exec-1")


def test_a_refusal_gets_a_record_of_its_own(table: RestoreTable) -> None:
    table.put_audit("exec-1", {"started_at": NOW.isoformat(), "database": "orders", "outcome": "restored"})
    first = table.record_refusal({"claimed_execution": "exec-1", "step": "restore", "outcome": "refused"}, NOW)
    second = table.record_refusal({"claimed_execution": "exec-1", "step": "finish", "outcome": "refused"}, NOW)
    assert first != second and first.startswith("refusal-")
    assert (table.audit("exec-1") or {})["outcome"] == "restored"  # the restore's own record is untouched
    listed = {r["execution"]: r for r in table.audits(10)}
    assert listed[first]["step"] == "restore" and listed[second]["claimed_execution"] == "exec-1"


def test_audit_records_are_updated_and_listed_newest_first(table: RestoreTable) -> None:
    for i in range(3):
        table.put_audit(
            f"exec-{i}",
            {
                "started_at": (NOW + i * HOUR).isoformat(),
                "database": "orders",
                "requested_by": "alice",
                "outcome": None,
            },
        )
    table.update_audit("exec-1", {"outcome": "restored", "timings": {"restore": 12.5}, "approver": "bob"})
    listed = table.audits()
    assert [r["execution"] for r in listed] == ["exec-2", "exec-1", "exec-0"]
    assert listed[1]["outcome"] == "restored" and listed[1]["timings"] == {"restore": 12.5}
    assert table.audits(limit=2)[-1]["execution"] == "exec-1"
    assert table.audit("exec-9") is None


def test_a_missing_table_is_one_clear_error(table: RestoreTable) -> None:
    other = RestoreTable(table._client, "no-such-table")
    with pytest.raises(RestoreTableError) as failure:
        other.acquire("orders", "staging", "exec-1", NOW, HOUR)
    assert "no-such-table" in str(failure.value)
