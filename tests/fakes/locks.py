"""An in-memory ``RunLocks``: the backup lock of each database, as ``S3Store`` keeps it in the bucket."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from backstop.errors import BackupAlreadyRunningError
from backstop.names import check_database_name
from backstop.ports import RunLock
from tests.fakes.bucket import FakeBucket
from tests.fakes.faults import faulty


@dataclass(frozen=True)
class HeldRunLock:
    """The lock object of one database: who wrote it, when, until when, and its ETag."""

    owner: str
    acquired_at: datetime
    expires_at: datetime
    etag: str


class FakeRunLocks(FakeBucket):
    """Run locks in a dict, with ``S3Store``'s rules: a live lock refuses everyone (its owner too), a lock
    past its expiry is taken over, and a release deletes the lock only while it is still the one we wrote."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run_locks: dict[str, HeldRunLock] = {}

    @faulty
    def acquire_run_lock(self, database: str, owner: str, now: datetime, ttl: timedelta) -> RunLock:
        self._refuse_on_replica(f"taking the backup lock of {database}")
        check_database_name(database)
        held = self.run_locks.get(database)
        if held is not None and held.expires_at > now:
            raise BackupAlreadyRunningError(
                f"A backup of {database} is already running (started {held.acquired_at.isoformat()} by "
                f"{held.owner}); this run is skipped."
            )
        expires = now + ttl
        # S3's ETag of a plain PUT is the MD5 of the body: the same owner, time and expiry give the same ETag.
        body = json.dumps({"owner": owner, "acquired_at": now.isoformat(), "expires_at": expires.isoformat()})
        etag = f'"{hashlib.md5(body.encode(), usedforsecurity=False).hexdigest()}"'
        self.run_locks[database] = HeldRunLock(owner, now, expires, etag)
        return RunLock(database, owner, etag)

    @faulty
    def release_run_lock(self, lock: RunLock) -> None:
        self._refuse_on_replica(f"releasing the backup lock of {lock.database}")
        check_database_name(lock.database)
        held = self.run_locks.get(lock.database)
        if held is not None and held.etag == lock.etag:
            del self.run_locks[lock.database]

    def lock_owner(self, database: str) -> str | None:
        """Who holds the lock of ``database`` now, expired or not (what the lock object in the bucket says)."""
        held = self.run_locks.get(database)
        return held.owner if held else None
