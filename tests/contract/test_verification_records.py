"""The VerificationRecords contract: what drills and the sweep found, kept beside each backup, and the last good drill.

Every test runs against ``FakeVerificationRecords`` and ``S3Store`` on moto S3. The drill writes its
record beside the backup and, when it passed, as the database's last successful drill (which the
freshness check reads); the sweep reads ``sidecar_times`` to sweep the longest-unswept backups first
and compares with its last record of a backup.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import InvalidNameError, ReadOnlyReplicaError, StorageError
from backstop.manifest import Manifest
from backstop.ports import VerificationRecords
from tests.conftest import BUCKET
from tests.fakes.verification import FakeVerificationRecords
from tests.unit.test_manifest import sample_manifest

FIRST = sample_manifest("orders-20261120T020000Z")
SECOND = sample_manifest("orders-20261121T020000Z")
OTHER_DATABASE = sample_manifest("orders-eu-20261121T020000Z")
DRILLED_AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


@dataclass
class Vault:
    records: VerificationRecords
    replica: Callable[[], VerificationRecords]
    unreachable: Callable[[], VerificationRecords]


def _unreachable_fake() -> FakeVerificationRecords:
    fake = FakeVerificationRecords()
    fake.fail_everything(StorageError("Reading the drill record failed: S3 answered AccessDenied."))
    return fake


@pytest.fixture(params=["fake", "real"])
def vault(request: pytest.FixtureRequest) -> Vault:
    if request.param == "fake":
        return Vault(
            FakeVerificationRecords(), lambda: FakeVerificationRecords(replica_of="backstop-vault"), _unreachable_fake
        )
    store: S3Store = request.getfixturevalue("store")
    return Vault(
        store,
        lambda: S3Store(store.client, bucket=BUCKET, prefix="backups", replica_of="backstop-vault"),
        lambda: S3Store(store.client, bucket="backstop-gone", prefix="backups"),
    )


def drill_record(manifest: Manifest, *, passed: bool = True) -> dict[str, object]:
    return {"backup_id": manifest.backup_id, "passed": passed, "started_at": DRILLED_AT.isoformat(), "seconds": 1.5}


def test_a_backup_never_drilled_or_swept_has_no_record(vault: Vault) -> None:
    assert vault.records.get_sidecar(FIRST.backup_id, "drill") is None
    assert vault.records.get_sidecar(FIRST.backup_id, "sweep") is None
    assert vault.records.sidecar_times("orders", "sweep") == {}
    assert vault.records.last_drill_success("orders") is None


def test_a_record_comes_back_as_written_and_the_latest_replaces_the_last(vault: Vault) -> None:
    # given a drill that failed, then one that passed
    vault.records.put_sidecar(FIRST, "drill", drill_record(FIRST, passed=False))
    vault.records.put_sidecar(FIRST, "drill", drill_record(FIRST))

    # then the backup's drill record is the latest
    assert vault.records.get_sidecar(FIRST.backup_id, "drill") == drill_record(FIRST)


def test_the_drill_and_the_sweep_records_of_a_backup_are_separate(vault: Vault) -> None:
    vault.records.put_sidecar(FIRST, "drill", {"passed": True})
    vault.records.put_sidecar(FIRST, "sweep", {"outcome": "match"})

    assert vault.records.get_sidecar(FIRST.backup_id, "drill") == {"passed": True}
    assert vault.records.get_sidecar(FIRST.backup_id, "sweep") == {"outcome": "match"}
    assert vault.records.get_sidecar(SECOND.backup_id, "sweep") is None


def test_a_record_comes_back_as_json_gives_it(vault: Vault) -> None:
    # given a record holding a time object, a tuple and nested values
    vault.records.put_sidecar(FIRST, "sweep", {"at": DRILLED_AT, "parts": (1, 2), "nested": {"ok": None}})
    vault.records.put_last_drill_success("orders", {"started_at": DRILLED_AT, "queries": ("a", "b")})

    # then what comes back is what its JSON says: the time as its text, the tuple as a list
    assert vault.records.get_sidecar(FIRST.backup_id, "sweep") == {
        "at": str(DRILLED_AT),
        "parts": [1, 2],
        "nested": {"ok": None},
    }
    assert vault.records.last_drill_success("orders") == {"started_at": str(DRILLED_AT), "queries": ["a", "b"]}


def test_sidecar_times_say_when_each_backup_of_the_database_last_got_that_record(vault: Vault) -> None:
    # given sweep records of two backups of orders, a drill record of one, and a sweep record of orders-eu
    before = datetime.now(UTC).replace(microsecond=0)
    vault.records.put_sidecar(FIRST, "sweep", {"outcome": "match"})
    vault.records.put_sidecar(SECOND, "sweep", {"outcome": "match"})
    vault.records.put_sidecar(SECOND, "drill", {"passed": True})
    vault.records.put_sidecar(OTHER_DATABASE, "sweep", {"outcome": "match"})
    after = datetime.now(UTC)

    # when the sweep asks when orders' backups were last swept
    swept = vault.records.sidecar_times("orders", "sweep")

    # then it gets orders' two backups (not orders-eu's), each at the time of its write, in whole seconds
    assert set(swept) == {FIRST.backup_id, SECOND.backup_id}
    assert all(before <= at <= after and at.microsecond == 0 for at in swept.values())
    assert swept[FIRST.backup_id] <= swept[SECOND.backup_id]
    assert set(vault.records.sidecar_times("orders", "drill")) == {SECOND.backup_id}
    assert set(vault.records.sidecar_times("orders-eu", "sweep")) == {OTHER_DATABASE.backup_id}


def test_the_last_successful_drill_is_kept_per_database_and_the_latest_wins(vault: Vault) -> None:
    # given two passed drills of orders and one of orders-eu
    vault.records.put_last_drill_success("orders", drill_record(FIRST))
    later = {**drill_record(SECOND), "started_at": (DRILLED_AT + timedelta(days=7)).isoformat()}
    vault.records.put_last_drill_success("orders", later)
    vault.records.put_last_drill_success("orders-eu", drill_record(OTHER_DATABASE))

    # then each database's last successful drill is its latest one
    assert vault.records.last_drill_success("orders") == later
    assert vault.records.last_drill_success("orders-eu") == drill_record(OTHER_DATABASE)
    assert vault.records.last_drill_success("uploads") is None


def test_a_database_name_outside_the_allow_list_is_refused(vault: Vault) -> None:
    with pytest.raises(InvalidNameError):
        vault.records.sidecar_times("../orders", "sweep")
    with pytest.raises(InvalidNameError):
        vault.records.last_drill_success("Orders!")
    with pytest.raises(InvalidNameError):
        vault.records.get_sidecar("orders-2026", "drill")


def test_a_replica_refuses_every_record_but_reads(vault: Vault) -> None:
    replica = vault.replica()

    with pytest.raises(ReadOnlyReplicaError, match="only reads"):
        replica.put_sidecar(FIRST, "drill", {"passed": True})
    with pytest.raises(ReadOnlyReplicaError, match="only reads"):
        replica.put_last_drill_success("orders", drill_record(FIRST))
    assert replica.get_sidecar(FIRST.backup_id, "drill") is None
    assert replica.last_drill_success("orders") is None


@pytest.mark.parametrize(
    "call",
    [
        lambda records: records.put_sidecar(FIRST, "drill", {"passed": True}),
        lambda records: records.get_sidecar(FIRST.backup_id, "drill"),
        lambda records: records.sidecar_times("orders", "sweep"),
        lambda records: records.put_last_drill_success("orders", {"passed": True}),
        lambda records: records.last_drill_success("orders"),
    ],
    ids=["put_sidecar", "get_sidecar", "sidecar_times", "put_last_drill_success", "last_drill_success"],
)
def test_a_bucket_s3_refuses_raises_storage_error_from_every_method(
    vault: Vault, call: Callable[[VerificationRecords], object]
) -> None:
    # the drill catches BackstopError around its records, the sweep StorageError around its listing
    with pytest.raises(StorageError):
        call(vault.unreachable())
