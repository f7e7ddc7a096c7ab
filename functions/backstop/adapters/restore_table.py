"""The restore table (DynamoDB): target locks, pending approvals and the audit trail of every restore.

One table, keys ``pk``/``sk``:

- ``lock#<database>#<target>`` / ``lock``: who holds the restore lock of a target (the execution),
  since when and until when. Taken by a conditional write that succeeds only if there is no lock,
  the lock is ours already (a retried task), or it expired; released by a conditional delete on
  the owner. A lock kept after a failed rollback has no expiry: only an operator removes it.
- ``restore#<execution>`` / ``approval``: the approval a restore waits for (database, target, backup,
  requester), never its task token. The approval component deletes it by a conditional delete
  when it answers, so a restore is approved (or rejected) once; it expires with the wait.
- ``refusal#<id>`` / ``audit``: a step invoked outside its own execution (a direct invoke, a
  replay): what was tried and why it was refused. Never written over a restore's own record.
- ``restore#<execution>`` / ``audit``: one record per restore (requester, reason, approver, backup,
  target, safety snapshot, step timings, outcome, failure reason), listed newest first through the
  ``by-kind`` index (``kind`` = ``audit``, sorted by ``started_at``).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from backstop.errors import ApprovalNotPendingError, RestoreError, RestoreTableError, TargetLockedError
from backstop.ports import PendingApproval, TargetLock

KIND_INDEX = "by-kind"
_CONDITION_FAILED = "ConditionalCheckFailedException"
_EXECUTION = re.compile(r"[A-Za-z0-9_.:-]{1,200}")


def _lock_key(database: str, target: str) -> dict[str, Any]:
    return {"pk": {"S": f"lock#{database}#{target}"}, "sk": {"S": "lock"}}


def _restore_key(execution: str, kind: str) -> dict[str, Any]:
    if not _EXECUTION.fullmatch(execution):
        raise RestoreError(f"{execution[:80]!r} is not an execution name or ARN.")
    return {"pk": {"S": f"restore#{execution}"}, "sk": {"S": kind}}


def _epoch(at: datetime) -> str:
    return str(int(at.timestamp()))


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as plain Python values (S, N, BOOL, NULL, M and L)."""

    def value(attr: dict[str, Any]) -> Any:
        ((kind, raw),) = attr.items()
        if kind == "S":
            return raw
        if kind == "N":
            return int(raw) if raw.lstrip("-").isdigit() else float(raw)
        if kind == "BOOL":
            return bool(raw)
        if kind == "NULL":
            return None
        if kind == "M":
            return {k: value(v) for k, v in raw.items()}
        if kind == "L":
            return [value(v) for v in raw]
        raise RestoreTableError(f"Unexpected DynamoDB attribute type {kind}.")

    return {name: value(attr) for name, attr in item.items()}


def _attr(value: Any) -> dict[str, Any]:
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): _attr(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [_attr(v) for v in value]}
    raise RestoreTableError(f"Cannot store a {type(value).__name__} in the restore table.")


class RestoreTable:
    """Locks, approvals and audit records of restores, in one DynamoDB table."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self.table = table

    def _call(self, what: str, call: Any, **kwargs: Any) -> Any:
        try:
            return call(TableName=self.table, **kwargs)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED:
                raise
            code = exc.response.get("Error", {}).get("Code", "error")
            raise RestoreTableError(f"{what} in the restore table {self.table} failed ({code}).") from None

    @staticmethod
    def _failed_condition(exc: ClientError) -> bool:
        return exc.response.get("Error", {}).get("Code") == _CONDITION_FAILED

    # -- target locks -------------------------------------------------------------------------

    def acquire(self, database: str, target: str, owner: str, now: datetime, ttl: timedelta) -> TargetLock:
        """Take the lock of ``database``/``target`` for ``owner``; TargetLockedError if another holds it."""
        expires = now + ttl
        item = {
            **_lock_key(database, target),
            "owner": {"S": owner},
            "acquired_at": {"S": now.astimezone(UTC).isoformat()},
            "expires_at": {"N": _epoch(expires)},
        }
        try:
            self._call(
                "Taking a lock",
                self._client.put_item,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR #owner = :owner OR "
                "(attribute_exists(expires_at) AND expires_at < :now)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":now": {"N": _epoch(now)}},
            )
        except ClientError as exc:
            if not self._failed_condition(exc):
                raise
            held = self.holder(database, target) or {}
            kept = " and was kept after a failed rollback: manual intervention needed" if held.get("kept") else ""
            raise TargetLockedError(
                f"The restore target {target} of {database} is locked by {held.get('owner', 'another restore')} "
                f"since {held.get('acquired_at', '?')}{kept}; this restore does not proceed."
            ) from None
        return TargetLock(database, target, owner, expires)

    def holder(self, database: str, target: str) -> dict[str, Any] | None:
        response = self._call(
            "Reading a lock", self._client.get_item, Key=_lock_key(database, target), ConsistentRead=True
        )
        item = response.get("Item")
        return _plain(item) if item else None

    def release(self, database: str, target: str, owner: str) -> bool:
        """Release the lock if ``owner`` holds it and it was not kept; False when it was not ours (or gone)."""
        try:
            self._call(
                "Releasing a lock",
                self._client.delete_item,
                Key=_lock_key(database, target),
                ConditionExpression="#owner = :owner AND attribute_not_exists(kept)",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
            )
        except ClientError as exc:
            if self._failed_condition(exc):
                return False
            raise
        return True

    def keep(self, database: str, target: str, owner: str, reason: str) -> None:
        """Keep ``owner``'s lock with no expiry (a rollback failed); only an operator removes it."""
        try:
            self._call(
                "Keeping a lock",
                self._client.update_item,
                Key=_lock_key(database, target),
                UpdateExpression="SET kept = :true, reason = :reason REMOVE expires_at",
                ConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}, ":true": {"BOOL": True}, ":reason": {"S": reason}},
            )
        except ClientError as exc:
            if not self._failed_condition(exc):
                raise
            raise RestoreTableError(
                f"The lock of {database}/{target} is no longer held by {owner}: it cannot be kept."
            ) from None

    # -- approvals ----------------------------------------------------------------------------

    def put_approval(self, approval: PendingApproval, expires: datetime) -> None:
        item = {
            **_restore_key(approval.execution, "approval"),
            "database": {"S": approval.database},
            "target": {"S": approval.target},
            "backup_id": {"S": approval.backup_id},
            "requested_by": {"S": approval.requested_by},
            "ttl": {"N": _epoch(expires)},
        }
        self._call("Recording an approval request", self._client.put_item, Item=item)

    def pending(self, execution: str) -> PendingApproval:
        """The approval waiting for ``execution``; ApprovalNotPendingError when there is none."""
        response = self._call(
            "Reading an approval", self._client.get_item, Key=_restore_key(execution, "approval"), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            raise ApprovalNotPendingError(
                f"No approval is pending for {execution}: it was never requested, was already answered, or timed out."
            )
        plain = _plain(item)
        return PendingApproval(
            execution=execution,
            database=str(plain["database"]),
            target=str(plain["target"]),
            backup_id=str(plain["backup_id"]),
            requested_by=str(plain["requested_by"]),
        )

    def take_approval(self, execution: str) -> None:
        """Consume the pending approval (a conditional delete): it can be answered only once."""
        try:
            self._call(
                "Consuming an approval",
                self._client.delete_item,
                Key=_restore_key(execution, "approval"),
                ConditionExpression="attribute_exists(pk)",
            )
        except ClientError as exc:
            if not self._failed_condition(exc):
                raise
            raise ApprovalNotPendingError(f"The approval of {execution} was answered by someone else.") from None

    # -- audit --------------------------------------------------------------------------------

    def put_audit(self, execution: str, record: dict[str, Any]) -> None:
        """Create or replace the audit record of ``execution`` (``started_at`` is required)."""
        item = {**_restore_key(execution, "audit"), "kind": {"S": "audit"}, "execution": {"S": execution}}
        item.update({name: _attr(value) for name, value in record.items()})
        if "started_at" not in record:
            raise RestoreTableError("An audit record needs started_at.")
        self._call("Writing an audit record", self._client.put_item, Item=item)

    def record_refusal(self, record: dict[str, Any], now: datetime) -> str:
        """A new audit record of a refused step (never over a restore's own record); its id."""
        refusal = f"refusal-{now.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:12]}"
        item = {"pk": {"S": f"refusal#{refusal}"}, "sk": {"S": "audit"}, "kind": {"S": "audit"}}
        item.update({name: _attr(value) for name, value in record.items()})
        item.update({"execution": {"S": refusal}, "started_at": {"S": now.astimezone(UTC).isoformat()}})
        self._call(
            "Recording a refusal", self._client.put_item, Item=item, ConditionExpression="attribute_not_exists(pk)"
        )
        return refusal

    def update_audit(self, execution: str, fields: dict[str, Any]) -> None:
        """Set ``fields`` on the audit record of ``execution``."""
        if not fields:
            return
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": _attr(value) for i, value in enumerate(fields.values())}
        expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        self._call(
            "Updating an audit record",
            self._client.update_item,
            Key=_restore_key(execution, "audit"),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )

    def audit(self, execution: str) -> dict[str, Any] | None:
        response = self._call(
            "Reading an audit record", self._client.get_item, Key=_restore_key(execution, "audit"), ConsistentRead=True
        )
        item = response.get("Item")
        return _plain(item) if item else None

    def audits(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` audit records, newest first (one index query, not a scan)."""
        records: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "IndexName": KIND_INDEX,
            "KeyConditionExpression": "kind = :audit",
            "ExpressionAttributeValues": {":audit": {"S": "audit"}},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        while len(records) < limit:
            response = self._call("Listing restores", self._client.query, **kwargs)
            records.extend(_plain(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return records[:limit]


def build_restore_table(table: str) -> RestoreTable:
    """The restore table named ``table``, through the standard AWS environment."""
    import boto3
    from botocore.config import Config as BotoConfig

    client = boto3.client("dynamodb", config=BotoConfig(retries={"mode": "standard", "max_attempts": 5}))
    return RestoreTable(client, table)
