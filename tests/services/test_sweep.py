"""The verification sweep on real backups (the backup service, real SQLite files) in moto's S3.

Damage is injected into the stored objects in place (``local.emulator.flip_byte``, ``truncate``):
same key, same version, same recorded checksums, only the bytes change, as bit rot would do it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import ConfigError, StorageError
from backstop.manifest import Manifest
from backstop.services.sweep import SweepReport, SweepService
from local.emulator import flip_byte, truncate
from tests.conftest import BUCKET, create_orders_db
from tests.services import RecordingNotifier, at, edit_manifest_json, run_backup

SWEPT_AT = datetime(2026, 11, 22, 3, 0, tzinfo=UTC)


def sqlite_db(path: Path, name: str = "orders") -> dict[str, Any]:
    return {"name": name, "engine": "sqlite", "path": str(path)}


@pytest.fixture
def config(make_config: Callable[..., Config], tmp_path: Path) -> Config:
    return make_config(sqlite_db(create_orders_db(tmp_path / "orders.db", rows=300)))


@pytest.fixture
def backups(config: Config, store: S3Store) -> list[Manifest]:
    """Three committed backups of orders, oldest first (19, 20 and 21 November)."""
    return [run_backup(config, store, at(day)).manifest for day in (19, 20, 21)]


def sweep(config: Config, store: S3Store, notifier: RecordingNotifier, budget: int | None = None) -> SweepReport:
    return SweepService(config, store, notifier, clock=lambda: SWEPT_AT).run(budget)


def one_backup_budget(backups: list[Manifest]) -> int:
    """Room for any one of ``backups`` but never for two."""
    smallest = min(m.object.size for m in backups)
    assert max(m.object.size for m in backups) <= smallest * 3 // 2
    return smallest * 3 // 2


def stamp_sweep(store: S3Store, backup_id: str, when: datetime) -> None:
    """Set the time S3 reports for the sweep record of ``backup_id`` (moto keeps naive UTC times)."""
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(BUCKET, store.sidecar_key(backup_id, "sweep"))
    stored.last_modified = when.astimezone(UTC).replace(tzinfo=None)


def damage_reading(
    store: S3Store, monkeypatch: pytest.MonkeyPatch, key: str, reads: list[Callable[[Iterator[bytes]], Iterator[bytes]]]
) -> None:
    """Make the next reads of ``key`` go through ``reads`` in turn (then read normally): a flaky network."""
    real = store.read_object

    def read_object(k: str, version_id: str | None) -> Iterator[bytes]:
        chunks = real(k, version_id)
        return reads.pop(0)(chunks) if k == key and reads else chunks

    monkeypatch.setattr(store, "read_object", read_object)


def dropped_connection(chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield next(chunks)
    raise StorageError("Reading the object failed: Connection was closed before we received a valid response.")


def garbled(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield bytes(b ^ 0x01 for b in chunk)


# -- all good ----------------------------------------------------------------------------------


def test_intact_backups_pass_without_an_alert_and_each_gets_a_passing_record(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given three intact backups and a budget for all of them
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then all three were read in full, oldest first, nothing was alerted, and each has its record
    assert report.passed == tuple(m.backup_id for m in backups)
    assert (report.corrupt, report.unreadable, report.skipped) == ((), (), 0)
    assert report.tally().bytes_read == sum(m.object.size for m in backups)
    assert (report.covered, report.committed) == (3, 3)
    assert notifier.alerts == []
    for manifest in backups:
        committed = store.client.head_object(Bucket=BUCKET, Key=store.manifest_key(manifest.backup_id))["VersionId"]
        assert store.get_sidecar(manifest.backup_id, "sweep") == {
            "checked_at": SWEPT_AT.isoformat(),
            "passed": True,
            "size": manifest.object.size,
            "sha256": manifest.object.sha256,
            "manifest_version": committed,
        }


# -- damage ------------------------------------------------------------------------------------


def test_a_flipped_byte_is_caught_alerted_with_the_backup_id_and_recorded(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given the middle backup's stored bytes rotted: one byte inverted, S3's own records untouched
    damaged = backups[1]
    flip_byte(BUCKET, damaged.object.key, damaged.object.version_id, offset=damaged.object.size // 2)
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then exactly that backup is corrupt (after a second read), and the alert names it and what differs
    assert report.corrupt == (damaged.backup_id,)
    assert report.passed == (backups[0].backup_id, backups[2].backup_id)
    [(subject, alert)] = notifier.alerts
    assert subject == f"Backstop: backup {damaged.backup_id} is corrupt"
    assert alert["event"] == "backup_corrupt"
    assert (alert["database"], alert["backup_id"], alert["found_by"]) == ("orders", damaged.backup_id, "sweep")
    assert alert["expected_size"] == alert["found_size"] == damaged.object.size
    assert alert["expected_sha256"] == damaged.object.sha256[:16]
    assert alert["found_sha256"] != alert["expected_sha256"]
    assert damaged.backup_id in str(alert["message"])
    # and the damage is recorded beside the backup, while the intact ones are recorded as passed
    record = store.get_sidecar(damaged.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["finding"]) == (False, "corrupt")
    assert record["reason"] == alert["message"]
    assert [s.retried for s in report.swept] == [False, True, False]


def test_a_truncated_object_is_caught_and_alerted(config: Config, store: S3Store, backups: list[Manifest]) -> None:
    # given the newest backup's stored object cut to half its length
    damaged = backups[2]
    truncate(BUCKET, damaged.object.key, damaged.object.version_id, keep=damaged.object.size // 2)
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then it is corrupt, and the alert gives the size found against the size recorded
    assert report.corrupt == (damaged.backup_id,)
    [(_, alert)] = notifier.alerts
    assert (alert["event"], alert["backup_id"]) == ("backup_corrupt", damaged.backup_id)
    assert (alert["expected_size"], alert["found_size"]) == (damaged.object.size, damaged.object.size // 2)
    assert f"{damaged.object.size // 2} bytes" in str(alert["message"])


def test_a_manifest_that_fails_its_own_checksum_is_a_finding(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given the oldest backup's manifest edited without being resealed
    damaged = backups[0]
    edit_manifest_json(store.client, store, damaged.backup_id, lambda data: data["tables"]["orders"].update(rows=7))
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then that backup is reported and alerted as corrupt, and the sweep goes on with the others
    assert report.corrupt == (damaged.backup_id,)
    assert report.passed == (backups[1].backup_id, backups[2].backup_id)
    [(_, alert)] = notifier.alerts
    assert (alert["event"], alert["backup_id"]) == ("backup_corrupt", damaged.backup_id)
    assert "checksum" in str(alert["message"])


# -- retries -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [dropped_connection, garbled], ids=["dropped-connection", "garbled-read"])
def test_a_transient_fault_that_clears_on_the_retry_is_not_alerted_and_the_backup_passes(
    config: Config,
    store: S3Store,
    backups: list[Manifest],
    monkeypatch: pytest.MonkeyPatch,
    fault: Callable[[Iterator[bytes]], Iterator[bytes]],
) -> None:
    # given intact backups, and a first read of the middle one that fails or arrives garbled
    flaky = backups[1]
    damage_reading(store, monkeypatch, flaky.object.key, [fault])
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then the second read clears it: no alert, and a passing record
    assert notifier.alerts == []
    assert report.passed == tuple(m.backup_id for m in backups)
    assert [s.retried for s in report.swept] == [False, True, False]
    record = store.get_sidecar(flaky.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["sha256"]) == (True, flaky.object.sha256)


def test_a_backup_that_cannot_be_read_twice_is_alerted_as_unreadable_not_corrupt(
    config: Config, store: S3Store, backups: list[Manifest], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the newest backup's object failing both reads
    unreadable = backups[2]
    damage_reading(store, monkeypatch, unreadable.object.key, [dropped_connection, dropped_connection])
    notifier = RecordingNotifier()

    # when the sweep runs
    report = sweep(config, store, notifier)

    # then it is unreadable (not corrupt), alerted as such, and recorded as not passed
    assert (report.unreadable, report.corrupt) == ((unreadable.backup_id,), ())
    [(subject, alert)] = notifier.alerts
    assert subject == f"Backstop: backup {unreadable.backup_id} is unreadable"
    assert (alert["event"], alert["backup_id"], alert["found_by"]) == (
        "backup_unreadable",
        unreadable.backup_id,
        "sweep",
    )
    record = store.get_sidecar(unreadable.backup_id, "sweep")
    assert record is not None
    assert (record["passed"], record["finding"]) == (False, "unreadable")


# -- budget and order --------------------------------------------------------------------------


def test_a_budget_of_one_backup_covers_all_three_in_three_runs_oldest_first_then_the_least_recently_swept(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given three never-swept backups and a budget with room for one of them per run
    budget = one_backup_budget(backups)
    notifier = RecordingNotifier()
    read: list[tuple[str, ...]] = []
    coverage: list[int] = []

    # when the sweep runs three times (a day apart, as S3 dates their records)
    for run in range(3):
        report = sweep(config, store, notifier, budget)
        read.append(tuple(s.backup_id for s in report.swept))
        coverage.append(report.covered)
        assert (report.skipped, report.committed) == (2, 3)
        assert report.tally().bytes_read <= budget
        stamp_sweep(store, report.swept[0].backup_id, datetime(2026, 11, 22 + run, 3, tzinfo=UTC))

    # then each run read one backup, never-swept oldest first, until all three were covered
    assert read == [(m.backup_id,) for m in backups]
    assert coverage == [1, 2, 3]
    # and a fourth run re-reads the one swept longest ago
    assert [s.backup_id for s in sweep(config, store, notifier, budget).swept] == [backups[0].backup_id]
    assert notifier.alerts == []


def test_once_all_are_swept_the_least_recently_swept_comes_first_whatever_its_age(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # given all three swept, the newest backup longest ago
    notifier = RecordingNotifier()
    sweep(config, store, notifier)
    stamp_sweep(store, backups[2].backup_id, datetime(2026, 11, 20, 3, tzinfo=UTC))
    stamp_sweep(store, backups[0].backup_id, datetime(2026, 11, 21, 3, tzinfo=UTC))
    stamp_sweep(store, backups[1].backup_id, datetime(2026, 11, 22, 3, tzinfo=UTC))

    # when the sweep runs with room for exactly those two
    report = sweep(config, store, notifier, backups[2].object.size + backups[0].object.size)

    # then it re-reads the newest backup, then the oldest
    assert [s.backup_id for s in report.swept] == [backups[2].backup_id, backups[0].backup_id]
    assert report.skipped == 1


def test_a_budget_smaller_than_any_backup_still_reads_one_per_run(
    config: Config, store: S3Store, backups: list[Manifest]
) -> None:
    # when the sweep runs with a budget of one byte
    report = sweep(config, store, RecordingNotifier(), budget=1)

    # then it still reads the oldest backup in full, and leaves the others for later runs
    assert report.passed == (backups[0].backup_id,)
    assert report.tally().bytes_read == backups[0].object.size
    assert report.skipped == 2


def test_the_budget_defaults_to_the_configured_one(
    make_config: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given a configured sweep budget of one byte
    config = make_config(sqlite_db(create_orders_db(tmp_path / "orders.db", rows=50)), sweep={"budget": 1})
    for day in (20, 21):
        run_backup(config, store, at(day))

    # when the sweep runs without a budget of its own
    report = sweep(config, store, RecordingNotifier())

    # then it used the configured one
    assert (report.budget, report.tally().checked, report.skipped) == (1, 1, 1)


def test_never_swept_backups_of_every_database_come_first_oldest_first(
    make_config: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given two databases, each with a backup swept before and newer ones never swept
    config = make_config(
        sqlite_db(create_orders_db(tmp_path / "orders.db", rows=50)),
        sqlite_db(create_orders_db(tmp_path / "billing.db", rows=50), name="billing"),
    )
    first = run_backup(config, store, at(18), database="billing").manifest
    store.put_sidecar(first, "sweep", {"passed": True})
    orders = run_backup(config, store, at(20), database="orders").manifest
    billing = run_backup(config, store, at(19), database="billing").manifest

    # when the sweep runs
    report = sweep(config, store, RecordingNotifier())

    # then the never-swept ones are read first, oldest first across databases, then the swept one
    assert [s.backup_id for s in report.swept] == [billing.backup_id, orders.backup_id, first.backup_id]
    assert report.tally("billing").checked == 2


class UnlistableFor(S3Store):
    """The real store, except that listing one database's backups fails as S3 would (AccessDenied)."""

    def __init__(self, store: S3Store, database: str) -> None:
        super().__init__(store.client, bucket=store.bucket, prefix=store.prefix)
        self._database = database

    def inventory(self, database: str) -> dict[str, int]:
        if database == self._database:
            raise StorageError(f"Listing {self.bucket}/{self.prefix}/{database}/ failed: S3 answered AccessDenied.")
        return super().inventory(database)


def test_a_database_that_cannot_be_listed_is_reported_and_the_others_are_still_swept(
    make_config: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given two databases with a backup each, and the listing of billing refused
    config = make_config(
        sqlite_db(create_orders_db(tmp_path / "orders.db", rows=50)),
        sqlite_db(create_orders_db(tmp_path / "billing.db", rows=50), name="billing"),
    )
    orders = run_backup(config, store, at(20), database="orders").manifest
    run_backup(config, store, at(20), database="billing")

    # when the sweep runs
    report = SweepService(config, UnlistableFor(store, "billing"), RecordingNotifier()).run()

    # then orders was swept and billing is reported with the reason
    assert report.passed == (orders.backup_id,)
    assert list(report.unlisted) == ["billing"]
    assert "AccessDenied" in report.unlisted["billing"]


def test_a_budget_below_one_byte_is_refused_in_one_sentence(config: Config, store: S3Store) -> None:
    with pytest.raises(ConfigError, match=r"^The sweep budget is 0 bytes: give at least one byte, such as 1GiB\.$"):
        sweep(config, store, RecordingNotifier(), budget=0)
