"""The RestoreLedger contract: target locks that exclude, expire and are kept; approvals answered once; the audit trail.

Every test runs against ``FakeRestoreLedger`` and ``RestoreTable`` on moto DynamoDB. The restore workflow
takes the target's lock (TargetLockedError stops it), checks before each destructive step that it still
holds it, keeps it after a failed rollback and releases it otherwise; the approval component takes the
pending approval once; the step guard records refusals; the CLI lists the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from backstop.adapters.restore_table import RestoreTable
from backstop.errors import ApprovalNotPendingError, RestoreError, RestoreTableError, TargetLockedError
from backstop.ports import PendingApproval, RestoreLedger
from tests.conftest import REGION
from tests.fakes.ledger import FakeRestoreLedger
from tests.store.test_restore_table import create_table

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
APPROVAL = PendingApproval("exec-1", "orders", "staging", "orders-20261121T020000Z", "alice")


@dataclass
class Ledgers:
    ledger: RestoreLedger
    unreachable: Callable[[], RestoreLedger]
    """A ledger whose table DynamoDB refuses (here: a table that does not exist)."""


def _unreachable_fake() -> FakeRestoreLedger:
    fake = FakeRestoreLedger("no-such-table")
    fake.fail_everything(
        RestoreTableError("Taking a lock in the restore table no-such-table failed (ResourceNotFound).")
    )
    return fake


@pytest.fixture(params=["fake", "real"])
def ledgers(request: pytest.FixtureRequest) -> Iterator[Ledgers]:
    if request.param == "fake":
        yield Ledgers(FakeRestoreLedger(), _unreachable_fake)
        return
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        create_table(client, "backstop-restores")
        yield Ledgers(RestoreTable(client, "backstop-restores"), lambda: RestoreTable(client, "no-such-table"))


@pytest.fixture
def ledger(ledgers: Ledgers) -> RestoreLedger:
    return ledgers.ledger


# -- target locks ---------------------------------------------------------------------------------


def test_a_free_target_is_locked_by_the_first_execution_until_its_expiry(ledger: RestoreLedger) -> None:
    # when an execution locks a free target
    lock = ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)

    # then it holds it until now + ttl, and the holder says who and since when
    assert (lock.database, lock.target, lock.owner, lock.expires_at) == ("orders", "staging", "exec-1", NOW + HOUR)
    held = ledger.holder("orders", "staging") or {}
    assert held["owner"] == "exec-1"
    assert held["acquired_at"] == NOW.isoformat()
    assert held["expires_at"] == int((NOW + HOUR).timestamp())


def test_a_held_target_refuses_another_execution_and_names_the_holder(ledger: RestoreLedger) -> None:
    # given exec-1 holding orders/staging
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)

    # when exec-2 asks, then it is refused with the holder's name
    with pytest.raises(TargetLockedError, match=r"locked by exec-1 since .*; this restore does not proceed"):
        ledger.acquire("orders", "staging", "exec-2", NOW + timedelta(minutes=5), HOUR)

    # and other targets and databases are independent
    ledger.acquire("orders", "in-place", "exec-2", NOW, HOUR)
    ledger.acquire("uploads", "staging", "exec-3", NOW, HOUR)
    assert (ledger.holder("orders", "staging") or {})["owner"] == "exec-1"


def test_a_retried_lock_step_of_the_same_execution_takes_it_again(ledger: RestoreLedger) -> None:
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)

    lock = ledger.acquire("orders", "staging", "exec-1", NOW + timedelta(seconds=30), HOUR)

    assert lock.owner == "exec-1"
    assert (ledger.holder("orders", "staging") or {})["expires_at"] == int(
        (NOW + timedelta(seconds=30) + HOUR).timestamp()
    )


def test_a_lock_holds_through_its_expiry_second_and_is_taken_over_after(ledger: RestoreLedger) -> None:
    # given exec-1's lock, whose execution died
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)

    # when exec-2 asks in the second of the expiry, then it is still refused
    with pytest.raises(TargetLockedError):
        ledger.acquire("orders", "staging", "exec-2", NOW + HOUR, HOUR)

    # when it asks a second later, then it takes the lock over
    ledger.acquire("orders", "staging", "exec-2", NOW + HOUR + timedelta(seconds=1), HOUR)
    assert (ledger.holder("orders", "staging") or {})["owner"] == "exec-2"


def test_only_the_holder_releases_a_lock(ledger: RestoreLedger) -> None:
    # given exec-1's lock
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)

    # then exec-2's release does nothing, exec-1's frees it, and a release of a free target says False
    assert ledger.release("orders", "staging", "exec-2") is False
    assert (ledger.holder("orders", "staging") or {})["owner"] == "exec-1"
    assert ledger.release("orders", "staging", "exec-1") is True
    assert ledger.holder("orders", "staging") is None
    assert ledger.release("orders", "staging", "exec-1") is False
    ledger.acquire("orders", "staging", "exec-2", NOW, HOUR)


def test_a_kept_lock_never_expires_and_only_an_operator_removes_it(ledger: RestoreLedger) -> None:
    # given a lock kept after a failed rollback
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)
    ledger.keep("orders", "staging", "exec-1", "rollback failed: disk full")

    # then neither its owner's release nor another execution long after its expiry frees it
    assert ledger.release("orders", "staging", "exec-1") is False
    with pytest.raises(TargetLockedError, match="kept after a failed rollback: manual intervention needed"):
        ledger.acquire("orders", "staging", "exec-2", NOW + 1000 * HOUR, HOUR)
    held = ledger.holder("orders", "staging") or {}
    assert held["kept"] is True
    assert held["reason"] == "rollback failed: disk full"
    assert "expires_at" not in held


def test_a_lock_no_longer_held_cannot_be_kept(ledger: RestoreLedger) -> None:
    # given exec-1's lock taken over by exec-2 after it expired
    ledger.acquire("orders", "staging", "exec-1", NOW, HOUR)
    ledger.acquire("orders", "staging", "exec-2", NOW + 2 * HOUR, HOUR)

    # when exec-1's rollback fails and it tries to keep the lock, then it is told it no longer holds it
    with pytest.raises(RestoreTableError, match="no longer held by exec-1"):
        ledger.keep("orders", "staging", "exec-1", "rollback failed")
    with pytest.raises(RestoreTableError):
        ledger.keep("orders", "production", "exec-1", "rollback failed")
    assert "kept" not in (ledger.holder("orders", "staging") or {})


# -- approvals ------------------------------------------------------------------------------------


def test_an_approval_is_pending_until_it_is_answered_once(ledger: RestoreLedger) -> None:
    # given a restore waiting for approval
    ledger.put_approval(APPROVAL, NOW + 24 * HOUR)
    assert ledger.pending("exec-1") == APPROVAL

    # when it is answered
    ledger.take_approval("exec-1")

    # then it is no longer pending, and a second answer is refused
    with pytest.raises(ApprovalNotPendingError, match="No approval is pending for exec-1"):
        ledger.pending("exec-1")
    with pytest.raises(ApprovalNotPendingError, match="answered by someone else"):
        ledger.take_approval("exec-1")


def test_an_approval_never_requested_is_not_pending(ledger: RestoreLedger) -> None:
    with pytest.raises(ApprovalNotPendingError):
        ledger.pending("exec-9")
    with pytest.raises(ApprovalNotPendingError):
        ledger.take_approval("exec-9")


@pytest.mark.parametrize("execution", ["exec 1", "", "exec/1", "x" * 201])
def test_an_execution_that_is_not_a_name_or_arn_is_refused(ledger: RestoreLedger, execution: str) -> None:
    with pytest.raises(RestoreError, match="is not an execution name or ARN"):
        ledger.pending(execution)
    with pytest.raises(RestoreError, match="is not an execution name or ARN"):
        ledger.put_audit(execution, {"started_at": NOW.isoformat()})
    with pytest.raises(RestoreError, match="is not an execution name or ARN"):
        ledger.audit(execution)


# -- audit ----------------------------------------------------------------------------------------


def test_an_audit_record_comes_back_with_its_fields_as_plain_values(ledger: RestoreLedger) -> None:
    # given an audit record, then fields set on it as the restore goes
    ledger.put_audit(
        "exec-1",
        {"started_at": NOW.isoformat(), "database": "orders", "dry_run": False, "outcome": None, "skipped": ("a", "b")},
    )
    ledger.update_audit("exec-1", {"timings": {"restore": 12.5, "lock": 1}, "outcome": "restored", "approver": "bob"})
    ledger.update_audit("exec-1", {})

    # then the record holds every field, as plain values (a tuple as a list), with its execution and kind
    record = ledger.audit("exec-1") or {}
    assert {k: record[k] for k in record if k not in ("pk", "sk")} == {
        "execution": "exec-1",
        "kind": "audit",
        "started_at": NOW.isoformat(),
        "database": "orders",
        "dry_run": False,
        "outcome": "restored",
        "skipped": ["a", "b"],
        "timings": {"restore": 12.5, "lock": 1},
        "approver": "bob",
    }
    assert ledger.audit("exec-9") is None


def test_an_audit_record_needs_a_start_and_values_the_table_can_hold(ledger: RestoreLedger) -> None:
    with pytest.raises(RestoreTableError, match="needs started_at"):
        ledger.put_audit("exec-1", {"database": "orders"})
    with pytest.raises(RestoreTableError, match="Cannot store a datetime"):
        ledger.put_audit("exec-1", {"started_at": NOW})
    ledger.put_audit("exec-1", {"started_at": NOW.isoformat()})
    with pytest.raises(RestoreTableError, match="Cannot store a set"):
        ledger.update_audit("exec-1", {"skipped": {"a"}})
    assert ledger.audit("exec-1") is not None


def test_audit_records_are_listed_newest_first(ledger: RestoreLedger) -> None:
    # given three restores an hour apart
    for i in range(3):
        ledger.put_audit(f"exec-{i}", {"started_at": (NOW + i * HOUR).isoformat(), "database": "orders"})

    # then the trail lists them newest first, as many as asked
    assert [r["execution"] for r in ledger.audits()] == ["exec-2", "exec-1", "exec-0"]
    assert [r["execution"] for r in ledger.audits(limit=2)] == ["exec-2", "exec-1"]


def test_a_refusal_gets_a_record_of_its_own_and_leaves_the_restores_record_alone(ledger: RestoreLedger) -> None:
    # given a restore's record
    ledger.put_audit("exec-1", {"started_at": NOW.isoformat(), "database": "orders", "outcome": "restored"})

    # when two replays claiming to be exec-1 are refused
    first = ledger.record_refusal({"claimed_execution": "exec-1", "step": "restore", "outcome": "refused"}, NOW)
    second = ledger.record_refusal({"claimed_execution": "exec-1", "step": "finish", "outcome": "refused"}, NOW + HOUR)

    # then each has a record of its own in the trail, and the restore's record is untouched
    assert first != second
    assert first.startswith("refusal-20261122T100000Z-")
    assert (ledger.audit("exec-1") or {})["outcome"] == "restored"
    listed = {r["execution"]: r for r in ledger.audits(10)}
    assert set(listed) == {"exec-1", first, second}
    assert listed[first]["step"] == "restore"
    assert listed[second]["claimed_execution"] == "exec-1"
    assert listed[second]["started_at"] == (NOW + HOUR).isoformat()


def test_an_update_of_a_restore_without_a_record_leaves_a_bare_one_out_of_the_trail(ledger: RestoreLedger) -> None:
    # when a step sets fields on an execution whose Resolve never wrote its record
    ledger.update_audit("exec-1", {"requester": {"principal": "alice"}})

    # then the fields are there (finish later completes the record), but the trail does not list it
    record = ledger.audit("exec-1") or {}
    assert record["requester"] == {"principal": "alice"}
    assert "started_at" not in record
    assert ledger.audits() == []


def test_a_table_dynamodb_refuses_raises_restore_table_error(ledgers: Ledgers) -> None:
    # given a ledger whose table cannot be reached
    unreachable = ledgers.unreachable()

    # then every kind of call raises the project's error, never a botocore one
    with pytest.raises(RestoreTableError):
        unreachable.acquire("orders", "staging", "exec-1", NOW, HOUR)
    with pytest.raises(RestoreTableError):
        unreachable.pending("exec-1")
    with pytest.raises(RestoreTableError):
        unreachable.audits()


def test_values_of_every_kind_survive_the_round_trip(ledger: RestoreLedger) -> None:
    values: dict[str, Any] = {
        "int": 3,
        "negative": -4,
        "float": 0.25,
        "true": True,
        "none": None,
        "nested": [{"a": [1]}],
    }
    ledger.put_audit("exec-1", {"started_at": NOW.isoformat(), **values})

    record = ledger.audit("exec-1") or {}

    assert {k: record[k] for k in values} == values
    assert isinstance(record["int"], int) and isinstance(record["true"], bool)
