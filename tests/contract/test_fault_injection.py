"""The fakes' own fault injection: what a service test arms instead of patching an adapter.

Not part of any contract (the real adapters have no such switch): one test per fake that its faults
fire when armed, change nothing they should not, and stop when spent or healed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from backstop.errors import AlertDeliveryError, ConfigError, RestoreTableError, SourceError, StorageError
from backstop.ports import PendingApproval
from backstop.services.failure_alerts import FailedRun, FailureAlertService
from tests.fakes.catalog import FakeCatalog
from tests.fakes.failures import FakeFailureLog
from tests.fakes.ledger import FakeRestoreLedger
from tests.fakes.locks import FakeRunLocks
from tests.fakes.notifier import FakeNotifier
from tests.fakes.verification import FakeVerificationRecords
from tests.store.test_catalog import server
from tests.unit.test_manifest import sample_manifest

T0 = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def test_a_fault_can_only_be_armed_on_a_port_method_of_the_fake() -> None:
    with pytest.raises(
        ValueError, match=r"has no method 'acquire_lock' to fail: \['acquire_run_lock', 'release_run_lock'\]"
    ):
        FakeRunLocks().fail_next("acquire_lock", StorageError("x"))


def test_run_locks_a_release_s3_refuses_leaves_the_lock_held_until_it_succeeds() -> None:
    # given a held lock, and S3 refusing the next release
    locks = FakeRunLocks()
    lock = locks.acquire_run_lock("orders", "host-a:101", T0, HOUR)
    locks.fail_next("release_run_lock", StorageError("Releasing the lock failed: S3 could not be reached."))

    # when the run releases, then it is told, and the lock is still held
    with pytest.raises(StorageError, match="could not be reached"):
        locks.release_run_lock(lock)
    assert locks.lock_owner("orders") == "host-a:101"

    # when it releases again, the fault is spent and the lock is gone
    locks.release_run_lock(lock)
    assert locks.lock_owner("orders") is None


def test_failure_log_a_record_written_though_its_answer_was_lost_still_counts_for_the_retry() -> None:
    # given S3 storing the next failure record but losing its answer
    log = FakeFailureLog()
    log.fail_next("record_failure", StorageError("Writing the failure record timed out."), after=True)

    # when a run's failure is recorded, then the caller sees the error, yet the record was written
    with pytest.raises(StorageError):
        log.record_failure("orders", "orders-20261121T020000Z", T0, SourceError("gone"))
    assert log.failure_count("orders") == 1

    # so the retry's failure is its second attempt, and is not alerted again
    assert log.record_failure("orders", "orders-20261121T020000Z", T0 + HOUR, SourceError("gone")) == 2


def test_verification_records_a_listing_refused_until_healed() -> None:
    # given a sweep record, and S3 refusing every listing
    records = FakeVerificationRecords()
    manifest = sample_manifest("orders-20261121T020000Z")
    records.put_sidecar(manifest, "sweep", {"outcome": "match"})
    records.fail_always("sidecar_times", StorageError("Listing failed: S3 answered AccessDenied."))

    # then every listing fails, while reads still work
    for _ in range(3):
        with pytest.raises(StorageError, match="AccessDenied"):
            records.sidecar_times("orders", "sweep")
    assert records.get_sidecar(manifest.backup_id, "sweep") == {"outcome": "match"}

    # when S3 answers again, the record was there all along
    records.heal()
    assert set(records.sidecar_times("orders", "sweep")) == {manifest.backup_id}


def test_restore_ledger_an_approval_the_table_refuses_to_take_stays_pending() -> None:
    # given a pending approval, and DynamoDB refusing the next write
    ledger = FakeRestoreLedger()
    approval = PendingApproval("exec-1", "orders", "staging", "orders-20261121T020000Z", "alice")
    ledger.put_approval(approval, T0 + 24 * HOUR)
    ledger.fail_next(
        "take_approval", RestoreTableError("Consuming an approval in the restore table failed (Throttled).")
    )

    # when the approver answers, then the error is raised and the approval is still pending
    with pytest.raises(RestoreTableError, match="Throttled"):
        ledger.take_approval("exec-1")
    assert ledger.pending("exec-1") == approval

    # and answering again takes it
    ledger.take_approval("exec-1")
    assert ledger.items == {}


def test_notifier_a_refusing_topic_fails_the_failure_alert_function_so_lambda_retries_it() -> None:
    # given the failure-alert function's strict notifier, and a topic that refuses timeout alerts only
    notifier = FakeNotifier(strict=True)
    notifier.refuse(lambda subject: "Sandbox.Timedout" in subject)
    service = FailureAlertService(notifier)

    # when a timed-out run is alerted, then the service fails instead of losing the alert
    timed_out = FailedRun("lambda-on-failure-destination", "Sandbox.Timedout", "Task timed out", database="orders")
    with pytest.raises(AlertDeliveryError):
        service.alert(timed_out)

    # while another failure is delivered
    service.alert(
        FailedRun("lambda-on-failure-destination", "IntegrityError", "integrity_check failed", database="orders")
    )
    assert notifier.refused == ["Backstop: backup of orders failed (Sandbox.Timedout)"]
    assert notifier.events() == ["backup_failed"]


def test_catalog_a_read_that_fails_once_succeeds_the_next_time() -> None:
    # given a catalog whose next read Parameter Store throttles
    catalog = FakeCatalog([server("orders")])
    catalog.fail_next(
        "read", ConfigError("The database catalog /backstop/Backstop/databases cannot be read (Throttled).")
    )

    # then the first read (through databases()) fails, the next one gives the databases
    with pytest.raises(ConfigError, match="Throttled"):
        catalog.databases()
    assert catalog.databases() == (server("orders"),)
