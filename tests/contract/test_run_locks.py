"""The RunLocks contract: one backup run of a database at a time, a dead run's lock taken over once it expired.

Every test runs against ``FakeRunLocks`` and ``S3Store`` on moto S3. ``BackupService`` relies on all of it:
it takes the lock before anything else, skips the run on BackupAlreadyRunningError, releases in a
``finally`` (a StorageError there only logged), and sets the expiry past the function's own timeout.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import BackupAlreadyRunningError, InvalidNameError, ReadOnlyReplicaError, StorageError
from backstop.ports import RunLocks
from tests.conftest import BUCKET
from tests.fakes.locks import FakeRunLocks

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
TTL = timedelta(hours=1)


@dataclass
class Vault:
    """The run locks of one bucket, and what its lock object says (who holds it, expired or not)."""

    locks: RunLocks
    owner: Callable[[str], str | None]
    replica: Callable[[], RunLocks]
    """The store of this vault's replica, which Backstop only reads."""
    unreachable: Callable[[], RunLocks]
    """A store whose bucket S3 refuses (gone, or access denied)."""


def _owner_in_bucket(s3: Any) -> Callable[[str], str | None]:
    def owner(database: str) -> str | None:
        try:
            body = s3.get_object(Bucket=BUCKET, Key=f"backups/_locks/{database}.backup.json")["Body"].read()
        except s3.exceptions.NoSuchKey:
            return None
        return str(json.loads(body)["owner"])

    return owner


@pytest.fixture(params=["fake", "real"])
def vault(request: pytest.FixtureRequest) -> Vault:
    if request.param == "fake":
        fake = FakeRunLocks()
        return Vault(fake, fake.lock_owner, lambda: FakeRunLocks(replica_of="backstop-vault"), _unreachable_fake)
    store: S3Store = request.getfixturevalue("store")
    return Vault(
        store,
        _owner_in_bucket(store.client),
        lambda: S3Store(store.client, bucket=BUCKET, prefix="backups", replica_of="backstop-vault"),
        lambda: S3Store(store.client, bucket="backstop-gone", prefix="backups"),
    )


def _unreachable_fake() -> FakeRunLocks:
    fake = FakeRunLocks()
    fake.fail_everything(StorageError("Writing the lock backups/_locks/orders.backup.json failed: S3 answered 503."))
    return fake


def test_a_free_lock_is_taken_by_the_run_that_asks(vault: Vault) -> None:
    # when a run asks for the lock of a database nobody is backing up
    lock = vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)

    # then it holds it, under its name
    assert (lock.database, lock.owner) == ("orders", "host-a:101")
    assert lock.etag
    assert vault.owner("orders") == "host-a:101"


def test_a_live_lock_refuses_another_run_and_names_the_holder(vault: Vault) -> None:
    # given a run holding the lock
    vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)

    # when another run asks before it expires, then it is skipped and told who holds it
    with pytest.raises(BackupAlreadyRunningError, match=r"already running .*host-a:101.*skipped"):
        vault.locks.acquire_run_lock("orders", "host-b:202", T0 + timedelta(minutes=59), TTL)
    assert vault.owner("orders") == "host-a:101"


def test_a_live_lock_refuses_even_its_own_owner(vault: Vault) -> None:
    # given a run holding the lock (every run has an owner of its own: a retry is another run)
    vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)

    # when the same owner asks again, then it is refused too
    with pytest.raises(BackupAlreadyRunningError):
        vault.locks.acquire_run_lock("orders", "host-a:101", T0 + timedelta(minutes=1), TTL)


def test_the_locks_of_different_databases_are_independent(vault: Vault) -> None:
    # given orders locked
    vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)

    # when a run of invoices asks, then it gets invoices' lock
    lock = vault.locks.acquire_run_lock("invoices", "host-b:202", T0, TTL)

    assert lock.database == "invoices"
    assert (vault.owner("orders"), vault.owner("invoices")) == ("host-a:101", "host-b:202")


def test_a_lock_lives_until_its_expiry_and_is_taken_over_from_then(vault: Vault) -> None:
    # given a run that died holding the lock
    vault.locks.acquire_run_lock("orders", "crashed:101", T0, TTL)

    # when another run asks a second before the expiry, then it is refused
    with pytest.raises(BackupAlreadyRunningError):
        vault.locks.acquire_run_lock("orders", "host-b:202", T0 + TTL - timedelta(seconds=1), TTL)

    # when it asks at the expiry, then it takes the lock over
    lock = vault.locks.acquire_run_lock("orders", "host-b:202", T0 + TTL, TTL)
    assert lock.owner == "host-b:202"
    assert vault.owner("orders") == "host-b:202"


def test_a_released_lock_is_free_for_the_next_run(vault: Vault) -> None:
    # given a run that finished and released its lock
    lock = vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)
    vault.locks.release_run_lock(lock)

    # then nobody holds it, and the next run gets it at once
    assert vault.owner("orders") is None
    assert vault.locks.acquire_run_lock("orders", "host-b:202", T0, TTL).owner == "host-b:202"


def test_a_release_after_a_takeover_leaves_the_new_owners_lock(vault: Vault) -> None:
    # given a slow run whose lock expired and was taken over
    slow = vault.locks.acquire_run_lock("orders", "slow:101", T0, TTL)
    newer = vault.locks.acquire_run_lock("orders", "host-b:202", T0 + 2 * TTL, TTL)

    # when the slow run finally finishes and releases
    vault.locks.release_run_lock(slow)

    # then the newer run still holds the lock, and still excludes others until it releases
    assert vault.owner("orders") == "host-b:202"
    with pytest.raises(BackupAlreadyRunningError):
        vault.locks.acquire_run_lock("orders", "host-c:303", T0 + 2 * TTL + timedelta(minutes=1), TTL)
    vault.locks.release_run_lock(newer)
    assert vault.owner("orders") is None


def test_releasing_twice_is_harmless(vault: Vault) -> None:
    # given a released lock, taken since by another run
    lock = vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)
    vault.locks.release_run_lock(lock)
    other = vault.locks.acquire_run_lock("orders", "host-b:202", T0, TTL)

    # when the first run releases again, then nothing changes and nothing is raised
    vault.locks.release_run_lock(lock)

    assert vault.owner("orders") == "host-b:202"
    vault.locks.release_run_lock(other)


def test_a_database_name_outside_the_allow_list_is_refused(vault: Vault) -> None:
    with pytest.raises(InvalidNameError):
        vault.locks.acquire_run_lock("../orders", "host-a:101", T0, TTL)


def test_a_replica_refuses_to_take_a_lock(vault: Vault) -> None:
    # given the store of the vault's replica
    replica = vault.replica()

    # when a run asks it for a lock, then it is refused before anything is written
    with pytest.raises(ReadOnlyReplicaError, match="only reads"):
        replica.acquire_run_lock("orders", "host-a:101", T0, TTL)
    assert vault.owner("orders") is None


def test_a_bucket_that_cannot_be_written_raises_storage_error(vault: Vault) -> None:
    # given a store whose bucket S3 refuses
    unreachable = vault.unreachable()

    # when a run asks for a lock, then it gets the project's StorageError, never a botocore error
    with pytest.raises(StorageError, match="failed: S3 answered"):
        unreachable.acquire_run_lock("orders", "host-a:101", T0, TTL)


def test_a_release_the_bucket_refuses_raises_storage_error(vault: Vault) -> None:
    # given a lock, and then a bucket S3 refuses (BackupService catches exactly StorageError from a release)
    lock = vault.locks.acquire_run_lock("orders", "host-a:101", T0, TTL)

    # when the run releases it through the refusing store, then it gets StorageError
    with pytest.raises(StorageError):
        vault.unreachable().release_run_lock(lock)
