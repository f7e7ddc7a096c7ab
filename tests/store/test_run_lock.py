"""The backup run lock: one run per database at a time, taken over only after it expired."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import BackupAlreadyRunningError
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from tests.conftest import BUCKET

LOCK_KEY = "backups/_locks/orders.backup.json"
T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


def lock_owner(s3: Any) -> str | None:
    try:
        body = s3.get_object(Bucket=BUCKET, Key=LOCK_KEY)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None
    owner: str = json.loads(body)["owner"]
    return owner


def test_second_run_is_refused_while_the_first_holds_the_lock(store: S3Store, s3: Any) -> None:
    store.acquire_run_lock("orders", "host-a:101", T0, TTL)

    with pytest.raises(BackupAlreadyRunningError, match="already running") as caught:
        store.acquire_run_lock("orders", "host-b:202", T0 + timedelta(minutes=59), TTL)

    assert "host-a:101" in str(caught.value)
    assert "skipped" in str(caught.value)
    assert lock_owner(s3) == "host-a:101"


def test_locks_of_different_databases_are_independent(store: S3Store) -> None:
    store.acquire_run_lock("orders", "host-a:101", T0, TTL)

    lock = store.acquire_run_lock("invoices", "host-b:202", T0, TTL)

    assert lock.database == "invoices"


def test_expired_lock_is_taken_over(store: S3Store, s3: Any) -> None:
    store.acquire_run_lock("orders", "crashed:101", T0, TTL)

    lock = store.acquire_run_lock("orders", "host-b:202", T0 + TTL + timedelta(seconds=1), TTL)

    assert lock.owner == "host-b:202"
    assert lock_owner(s3) == "host-b:202"


def test_release_deletes_our_own_lock(store: S3Store, s3: Any) -> None:
    lock = store.acquire_run_lock("orders", "host-a:101", T0, TTL)

    store.release_run_lock(lock)

    assert lock_owner(s3) is None
    assert store.acquire_run_lock("orders", "host-b:202", T0, TTL).owner == "host-b:202"


def test_release_after_takeover_leaves_the_new_owners_lock(store: S3Store, s3: Any) -> None:
    slow = store.acquire_run_lock("orders", "slow:101", T0, TTL)
    newer = store.acquire_run_lock("orders", "host-b:202", T0 + 2 * TTL, TTL)

    store.release_run_lock(slow)  # the slow run finally finishes

    assert lock_owner(s3) == "host-b:202"
    with pytest.raises(BackupAlreadyRunningError):
        store.acquire_run_lock("orders", "host-c:303", T0 + 2 * TTL + timedelta(minutes=1), TTL)
    store.release_run_lock(newer)
    assert lock_owner(s3) is None


def test_releasing_twice_is_harmless(store: S3Store, s3: Any) -> None:
    lock = store.acquire_run_lock("orders", "host-a:101", T0, TTL)
    store.release_run_lock(lock)
    other = store.acquire_run_lock("orders", "host-b:202", T0, TTL)

    store.release_run_lock(lock)

    assert lock_owner(s3) == "host-b:202"
    store.release_run_lock(other)


def test_two_runs_racing_for_an_expired_lock_are_not_both_let_in(store: S3Store, s3: Any) -> None:
    store.acquire_run_lock("orders", "crashed:101", T0, TTL)
    later = T0 + 2 * TTL
    raced: list[str] = []

    def other_run_takes_over_first(params: dict[str, Any], **_: Any) -> None:
        # Between our read of the expired lock and our conditional takeover write, another run takes it over.
        if "If-Match" in params["headers"] and not raced:
            raced.append("host-c:303")
            store.acquire_run_lock("orders", "host-c:303", later, TTL)

    s3.meta.events.register("before-call.s3.PutObject", other_run_takes_over_first)

    with pytest.raises(BackupAlreadyRunningError, match="took over"):
        store.acquire_run_lock("orders", "host-b:202", later, TTL)

    assert raced == ["host-c:303"]
    assert lock_owner(s3) == "host-c:303"


def test_lock_released_between_check_and_read_is_acquired(store: S3Store, s3: Any) -> None:
    held = store.acquire_run_lock("orders", "host-a:101", T0, TTL)

    def holder_finishes(**_: Any) -> None:
        s3.meta.events.unregister("before-call.s3.GetObject", holder_finishes)
        store.release_run_lock(held)

    s3.meta.events.register("before-call.s3.GetObject", holder_finishes)

    lock = store.acquire_run_lock("orders", "host-b:202", T0, TTL)

    assert lock.owner == "host-b:202"


def test_release_racing_a_takeover_leaves_the_new_owners_lock(store: S3Store, s3: Any) -> None:
    slow = store.acquire_run_lock("orders", "slow:101", T0, TTL)
    raced: list[str] = []

    def takeover_just_before_our_delete(**_: Any) -> None:
        if not raced:
            raced.append("host-b:202")
            store.acquire_run_lock("orders", "host-b:202", T0 + 2 * TTL, TTL)

    s3.meta.events.register("before-call.s3.DeleteObject", takeover_just_before_our_delete)

    store.release_run_lock(slow)

    assert raced == ["host-b:202"]
    assert lock_owner(s3) == "host-b:202"


def test_overlapping_backup_run_is_skipped_and_says_so(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path
) -> None:
    source = tmp_path / "orders.db"
    source.write_bytes(b"")  # never read: the run stops at the lock
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(source)})
    store.acquire_run_lock("orders", "scheduler:1", T0, timedelta(hours=12))
    service = BackupService(config, store, clock=lambda: T0 + timedelta(minutes=5))

    with pytest.raises(BackupAlreadyRunningError, match="already running"):
        service.run(BackupRequest("orders", T0, "manual", Trigger(kind="user", by="alice")))

    assert lock_owner(s3) == "scheduler:1"
    assert store.newest_backup_id("orders") is None
