"""An in-memory ``RestoreLedger``: target locks, pending approvals and the audit trail, as ``RestoreTable`` keeps
them in DynamoDB (items keyed ``pk``/``sk``, read back as plain values, conditional writes)."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from backstop.errors import ApprovalNotPendingError, RestoreError, RestoreTableError, TargetLockedError
from backstop.ports import PendingApproval, TargetLock
from tests.fakes.faults import Faulty, faulty

Key = tuple[str, str]
_EXECUTION = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def _lock_key(database: str, target: str) -> Key:
    return f"lock#{database}#{target}", "lock"


def _restore_key(execution: str, kind: str) -> Key:
    if not _EXECUTION.fullmatch(execution):
        raise RestoreError(f"{execution[:80]!r} is not an execution name or ARN.")
    return f"restore#{execution}", kind


def _epoch(at: datetime) -> int:
    """DynamoDB keeps expiry times as whole epoch seconds."""
    return int(at.timestamp())


def _stored(value: Any) -> Any:
    """``value`` as DynamoDB gives it back: plain JSON-like values, tuples as lists; anything else is refused."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _stored(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stored(v) for v in value]
    raise RestoreTableError(f"Cannot store a {type(value).__name__} in the restore table.")


def _item(key: Key, **attributes: Any) -> dict[str, Any]:
    return {"pk": key[0], "sk": key[1], **attributes}


class FakeRestoreLedger(Faulty):
    """The restore table in a dict of items, with ``RestoreTable``'s conditions on every write.

    ``items`` holds each item as ``RestoreTable`` reads it back (``pk``, ``sk`` and plain values), so a
    test can look at what a service left behind, or arrange what a table would hold.
    """

    def __init__(self, table: str = "backstop-restores") -> None:
        self.table = table
        self.items: dict[Key, dict[str, Any]] = {}

    def _get(self, key: Key) -> dict[str, Any] | None:
        item = self.items.get(key)
        return copy.deepcopy(item) if item is not None else None

    # -- target locks -------------------------------------------------------------------------

    @faulty
    def acquire(self, database: str, target: str, owner: str, now: datetime, ttl: timedelta) -> TargetLock:
        key = _lock_key(database, target)
        held = self.items.get(key)
        free = (
            held is None
            or held["owner"] == owner
            or (
                "expires_at" in held and held["expires_at"] < _epoch(now)
            )  # whole seconds: the expiry second still holds
        )
        if not free:
            assert held is not None
            kept = " and was kept after a failed rollback: manual intervention needed" if held.get("kept") else ""
            raise TargetLockedError(
                f"The restore target {target} of {database} is locked by {held.get('owner', 'another restore')} "
                f"since {held.get('acquired_at', '?')}{kept}; this restore does not proceed."
            )
        expires = now + ttl
        self.items[key] = _item(
            key, owner=owner, acquired_at=now.astimezone(UTC).isoformat(), expires_at=_epoch(expires)
        )
        return TargetLock(database, target, owner, expires)

    @faulty
    def holder(self, database: str, target: str) -> dict[str, Any] | None:
        return self._get(_lock_key(database, target))

    @faulty
    def release(self, database: str, target: str, owner: str) -> bool:
        key = _lock_key(database, target)
        held = self.items.get(key)
        if held is None or held["owner"] != owner or "kept" in held:
            return False
        del self.items[key]
        return True

    @faulty
    def keep(self, database: str, target: str, owner: str, reason: str) -> None:
        held = self.items.get(_lock_key(database, target))
        if held is None or held["owner"] != owner:
            raise RestoreTableError(f"The lock of {database}/{target} is no longer held by {owner}: it cannot be kept.")
        held.update(kept=True, reason=reason)
        held.pop("expires_at", None)

    # -- approvals ----------------------------------------------------------------------------

    @faulty
    def put_approval(self, approval: PendingApproval, expires: datetime) -> None:
        key = _restore_key(approval.execution, "approval")
        self.items[key] = _item(
            key,
            database=approval.database,
            target=approval.target,
            backup_id=approval.backup_id,
            requested_by=approval.requested_by,
            ttl=_epoch(expires),
        )

    @faulty
    def pending(self, execution: str) -> PendingApproval:
        item = self.items.get(_restore_key(execution, "approval"))
        if item is None:
            raise ApprovalNotPendingError(
                f"No approval is pending for {execution}: it was never requested, was already answered, or timed out."
            )
        return PendingApproval(
            execution=execution,
            database=str(item["database"]),
            target=str(item["target"]),
            backup_id=str(item["backup_id"]),
            requested_by=str(item["requested_by"]),
        )

    @faulty
    def take_approval(self, execution: str) -> None:
        if self.items.pop(_restore_key(execution, "approval"), None) is None:
            raise ApprovalNotPendingError(f"The approval of {execution} was answered by someone else.")

    # -- audit --------------------------------------------------------------------------------

    @faulty
    def put_audit(self, execution: str, record: dict[str, Any]) -> None:
        key = _restore_key(execution, "audit")
        item = {**_item(key, kind="audit", execution=execution), **_stored(record)}
        if "started_at" not in record:
            raise RestoreTableError("An audit record needs started_at.")
        self.items[key] = item

    @faulty
    def record_refusal(self, record: dict[str, Any], now: datetime) -> str:
        refusal = f"refusal-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
        key = (f"refusal#{refusal}", "audit")
        item = {**_item(key, kind="audit"), **_stored(record)}
        item.update(execution=refusal, started_at=now.astimezone(UTC).isoformat())
        self.items[key] = item
        return refusal

    @faulty
    def update_audit(self, execution: str, fields: dict[str, Any]) -> None:
        if not fields:
            return
        key = _restore_key(execution, "audit")
        values = _stored(fields)
        # Like DynamoDB's UpdateItem, an update creates the item when there is none (without a kind: not listed).
        self.items.setdefault(key, _item(key)).update(values)

    @faulty
    def audit(self, execution: str) -> dict[str, Any] | None:
        return self._get(_restore_key(execution, "audit"))

    @faulty
    def audits(self, limit: int = 50) -> list[dict[str, Any]]:
        listed = [
            item
            for item in self.items.values()
            if item.get("kind") == "audit" and isinstance(item.get("started_at"), str)
        ]
        listed.sort(key=lambda item: str(item["started_at"]), reverse=True)
        return copy.deepcopy(listed[: max(limit, 0)])
