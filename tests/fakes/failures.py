"""An in-memory ``FailureLog``: the records of failed backup runs, as ``S3Store`` keeps them in the bucket."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from backstop.names import check_database_name, parse_backup_id
from tests.fakes.bucket import FakeBucket
from tests.fakes.faults import faulty


class FakeFailureLog(FakeBucket):
    """One record per failed backup id, counting its attempts, with the fields ``S3Store`` writes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.failures: dict[str, dict[str, dict[str, Any]]] = {}
        """The failure records by database, then by backup id (what `backstop stats` counts)."""

    @faulty
    def record_failure(self, database: str, backup_id: str, at: datetime, error: BaseException) -> int:
        self._refuse_on_replica(f"recording the failed run {backup_id}")
        parse_backup_id(backup_id, database)
        records = self.failures.setdefault(check_database_name(database), {})
        previous = records.get(backup_id)
        attempts = int(previous["attempts"]) + 1 if previous else 1
        records[backup_id] = {
            "backup_id": backup_id,
            "database": database,
            "at": at.isoformat(),
            "first_at": previous["first_at"] if previous else at.isoformat(),
            "attempts": attempts,
            "error": type(error).__name__,
            "message": str(error),
        }
        return attempts

    @faulty
    def failure_count(self, database: str) -> int:
        return len(self.failures.get(check_database_name(database), {}))

    def failure_records(self, database: str = "orders") -> list[dict[str, Any]]:
        """The failure records of ``database`` in backup id order, as ``tests.services.failure_records`` reads them."""
        records = self.failures.get(database, {})
        return [dict(records[backup_id]) for backup_id in sorted(records)]
