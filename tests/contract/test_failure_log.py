"""The FailureLog contract: a failed run leaves a record, and a retry of the same run counts, not alerts again.

Every test runs against ``FakeFailureLog`` and ``S3Store`` on moto S3. ``BackupService`` alerts a failure
only when ``record_failure`` says it is the run's first attempt; ``backstop stats`` shows ``failure_count``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import InvalidNameError, ReadOnlyReplicaError, SourceError, StorageError
from backstop.ports import FailureLog
from tests.conftest import BUCKET
from tests.fakes.failures import FakeFailureLog
from tests.services import failure_records

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
RUN = "orders-20261121T020000Z"
NEXT_RUN = "orders-20261122T020000Z"


@dataclass
class Vault:
    """The failure log of one bucket, the records it holds, and other stores of it."""

    log: FailureLog
    records: Callable[[str], list[dict[str, Any]]]
    replica: Callable[[], FailureLog]
    unreachable: Callable[[], FailureLog]


def _unreachable_fake() -> FakeFailureLog:
    fake = FakeFailureLog()
    fake.fail_everything(StorageError("Listing backstop-test/backups/_failures/orders/ failed: S3 answered 503."))
    return fake


@pytest.fixture(params=["fake", "real"])
def vault(request: pytest.FixtureRequest) -> Vault:
    if request.param == "fake":
        fake = FakeFailureLog()
        return Vault(fake, fake.failure_records, lambda: FakeFailureLog(replica_of="backstop-vault"), _unreachable_fake)
    store: S3Store = request.getfixturevalue("store")
    return Vault(
        store,
        lambda database: failure_records(store.client, database),
        lambda: S3Store(store.client, bucket=BUCKET, prefix="backups", replica_of="backstop-vault"),
        lambda: S3Store(store.client, bucket="backstop-gone", prefix="backups"),
    )


def test_the_first_failure_of_a_run_is_its_first_attempt(vault: Vault) -> None:
    # when a run fails for the first time
    attempt = vault.log.record_failure("orders", RUN, T0, SourceError("The source orders.db is missing."))

    # then it is attempt 1 (the one the service alerts), and one failure is counted
    assert attempt == 1
    assert vault.log.failure_count("orders") == 1


def test_the_retries_of_a_failed_run_count_up_in_one_record(vault: Vault) -> None:
    # given a run that failed once
    vault.log.record_failure("orders", RUN, T0, SourceError("first"))

    # when Lambda's retries of the same run fail too
    second = vault.log.record_failure("orders", RUN, T0 + timedelta(minutes=1), SourceError("second"))
    third = vault.log.record_failure("orders", RUN, T0 + timedelta(minutes=3), SourceError("third"))

    # then they are attempts 2 and 3 of the same failed run, still counted once
    assert (second, third) == (2, 3)
    assert vault.log.failure_count("orders") == 1


def test_a_record_keeps_the_error_the_attempts_and_when_the_run_first_failed(vault: Vault) -> None:
    vault.log.record_failure("orders", RUN, T0, SourceError("first"))
    vault.log.record_failure("orders", RUN, T0 + timedelta(minutes=1), StorageError("S3 could not be reached."))

    (record,) = vault.records("orders")

    assert record == {
        "backup_id": RUN,
        "database": "orders",
        "at": (T0 + timedelta(minutes=1)).isoformat(),
        "first_at": T0.isoformat(),
        "attempts": 2,
        "error": "StorageError",
        "message": "S3 could not be reached.",
    }


def test_failures_are_counted_per_run_and_per_database(vault: Vault) -> None:
    # given two failed runs of orders and one of invoices
    vault.log.record_failure("orders", RUN, T0, SourceError("a"))
    vault.log.record_failure("orders", NEXT_RUN, T0 + timedelta(days=1), SourceError("b"))
    vault.log.record_failure("invoices", "invoices-20261121T020000Z", T0, SourceError("c"))

    # then each database counts its own failed runs; one without failures counts none
    assert vault.log.failure_count("orders") == 2
    assert vault.log.failure_count("invoices") == 1
    assert vault.log.failure_count("uploads") == 0


def test_a_backup_id_of_another_database_is_refused_and_nothing_is_recorded(vault: Vault) -> None:
    with pytest.raises(InvalidNameError, match="does not belong to database"):
        vault.log.record_failure("invoices", RUN, T0, SourceError("x"))

    assert vault.log.failure_count("invoices") == 0
    assert vault.log.failure_count("orders") == 0


def test_a_replica_refuses_to_record_a_failure(vault: Vault) -> None:
    with pytest.raises(ReadOnlyReplicaError, match="only reads"):
        vault.replica().record_failure("orders", RUN, T0, SourceError("x"))

    assert vault.records("orders") == []


def test_a_bucket_that_cannot_be_listed_raises_storage_error_when_counting(vault: Vault) -> None:
    with pytest.raises(StorageError):
        vault.unreachable().failure_count("orders")


def test_a_failure_the_bucket_refuses_to_record_raises_storage_error(vault: Vault) -> None:
    with pytest.raises(StorageError):
        vault.unreachable().record_failure("orders", RUN, T0, SourceError("x"))
