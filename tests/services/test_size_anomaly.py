"""The size anomaly check: real SQLite backups that shrink, grow or empty out are flagged and still committed;
steady ones are not; the history costs a bounded number of requests."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import RECENT_SPARE_DAYS, S3Store
from backstop.errors import StorageError
from backstop.manifest import Compression, Manifest
from backstop.names import backup_id_for
from backstop.services.size_anomaly import HISTORY, SizeAnomaly, check_size, size_anomaly
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import commit_backup
from tests.services import RecordingNotifier, at, failure_records, run_backup
from tests.unit.test_manifest import sample_manifest


def sqlite_db(path: Path) -> dict[str, Any]:
    return {"name": "orders", "engine": "sqlite", "path": str(path)}


def delete_most_orders(path: Path) -> None:
    """What a botched migration or a wrong DELETE does: the orders table loses nearly all its rows."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
        conn.commit()
        conn.execute("VACUUM")


def add_orders(path: Path, rows: int) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.executemany(
            "INSERT INTO orders (customer_id, amount_cents, note) VALUES (?, ?, ?)",
            [(1 + i % 100, 100 + i, f"bulk import {i} " + "y" * 60) for i in range(rows)],
        )
        conn.commit()


@pytest.fixture
def busy_db(tmp_path: Path) -> Path:
    return create_orders_db(tmp_path / "orders.db", rows=3000)


# -- the fault it must catch ---------------------------------------------------------------------


def test_a_backup_far_smaller_than_the_recent_ones_is_flagged_alerted_and_still_committed(
    make_config: Any, store: S3Store, busy_db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # given four nights of backups of a busy database, then most of its orders deleted
    config = make_config(sqlite_db(busy_db))
    for day in (17, 18, 19, 20):
        run_backup(config, store, at(day))
    delete_most_orders(busy_db)
    notifier = RecordingNotifier()

    # when tonight's backup runs
    with caplog.at_level(logging.WARNING, logger="backstop.services.backup"):
        outcome = run_backup(config, store, at(21), notifier=notifier)

    # then it is committed (it is valid data) and flagged for a human: outcome, log and alert
    assert outcome.created
    assert store.newest_backup_id("orders") == "orders-20261121T020000Z"
    anomaly = outcome.size_anomaly
    assert anomaly is not None
    assert (anomaly.kind, anomaly.measure, anomaly.compared_with) == ("shrunk", "raw", 4)
    assert anomaly.ratio < 0.5
    assert outcome.warnings == (anomaly.sentence(),)
    assert "orders-20261121T020000Z" in anomaly.sentence()
    assert anomaly.sentence() in caplog.text
    [(subject, alert)] = notifier.alerts
    assert subject == "Backstop: backup of orders is far smaller than usual"
    assert alert["event"] == "backup_size_anomaly"
    assert (alert["database"], alert["backup_id"], alert["kind"]) == ("orders", "orders-20261121T020000Z", "shrunk")
    assert alert["size_bytes"] == outcome.manifest.raw.size


def test_a_backup_far_larger_than_the_recent_ones_is_flagged(make_config: Any, store: S3Store, busy_db: Path) -> None:
    # given four nights of backups, then a bulk import that triples the orders table
    config = make_config(sqlite_db(busy_db))
    for day in (17, 18, 19, 20):
        run_backup(config, store, at(day))
    add_orders(busy_db, 12_000)
    notifier = RecordingNotifier()

    # when tonight's backup runs
    outcome = run_backup(config, store, at(21), notifier=notifier)

    # then it is committed and flagged as grown
    assert outcome.created
    assert outcome.size_anomaly is not None
    assert outcome.size_anomaly.kind == "grew"
    [(subject, alert)] = notifier.alerts
    assert subject == "Backstop: backup of orders is far larger than usual"
    assert alert["kind"] == "grew"


def test_an_empty_database_after_real_ones_is_flagged_even_with_little_history(
    make_config: Any, store: S3Store, busy_db: Path
) -> None:
    # given a single earlier backup, then the database file replaced by an empty one (a bad deploy)
    config = make_config(sqlite_db(busy_db))
    run_backup(config, store, at(20))
    busy_db.unlink()
    for leftover in busy_db.parent.glob(busy_db.name + "-*"):
        leftover.unlink()
    sqlite3.connect(busy_db).close()
    notifier = RecordingNotifier()

    # when tonight's backup runs
    outcome = run_backup(config, store, at(21), notifier=notifier)

    # then it is committed and flagged as near-empty, although one backup is too little history for the ratios
    assert outcome.created
    assert outcome.size_anomaly is not None
    assert (outcome.size_anomaly.kind, outcome.size_anomaly.compared_with) == ("near-empty", 1)
    assert "near-empty" in outcome.warnings[0]
    [(_, alert)] = notifier.alerts
    assert alert["kind"] == "near-empty"


# -- quiet when all is well ----------------------------------------------------------------------


def test_steady_backups_are_not_flagged(make_config: Any, store: S3Store, busy_db: Path) -> None:
    # given a database that grows a little every day
    config = make_config(sqlite_db(busy_db))
    notifier = RecordingNotifier()
    outcomes = []

    # when it is backed up every night for a week
    for day in range(15, 22):
        add_orders(busy_db, 100)
        outcomes.append(run_backup(config, store, at(day), notifier=notifier))

    # then no backup is flagged and nothing is published
    assert [o.size_anomaly for o in outcomes] == [None] * 7
    assert [o.warnings for o in outcomes] == [()] * 7
    assert notifier.alerts == []


def test_a_repeated_delivery_is_not_checked_again(make_config: Any, store: S3Store, busy_db: Path) -> None:
    # given a shrunk backup already committed (and alerted) for tonight
    config = make_config(sqlite_db(busy_db))
    for day in (17, 18, 19, 20):
        run_backup(config, store, at(day))
    delete_most_orders(busy_db)
    run_backup(config, store, at(21))
    notifier = RecordingNotifier()

    # when the same scheduled run is delivered again
    outcome = run_backup(config, store, at(21), notifier=notifier)

    # then it returns the existing backup without a second alert
    assert not outcome.created
    assert outcome.size_anomaly is None
    assert notifier.alerts == []


def test_a_size_check_that_cannot_read_the_history_leaves_the_backup_committed(
    make_config: Any, store: S3Store, s3: Any, busy_db: Path
) -> None:
    # given a store whose listing of recent backups fails
    class Unlistable(S3Store):
        def recent_backup_ids(self, database: str, before: str, limit: int) -> list[str]:
            raise StorageError(f"Listing {self.bucket}/backups/{database}/ failed: S3 answered SlowDown.")

    config = make_config(sqlite_db(busy_db))
    unlistable = Unlistable(s3, bucket=BUCKET, prefix="backups")
    notifier = RecordingNotifier()

    # when a backup runs
    outcome = run_backup(config, unlistable, at(21), notifier=notifier)

    # then it is committed, says the check was not made, and is neither recorded nor alerted as a failure
    assert outcome.created
    assert store.manifest_exists("orders-20261121T020000Z")
    assert outcome.warnings == (
        "The size check could not be made: Listing backstop-test/backups/orders/ failed: S3 answered SlowDown.",
    )
    assert failure_records(s3) == []
    assert notifier.alerts == []


# -- the rule, on manifests ----------------------------------------------------------------------


def manifest(day: int, *, raw: int, stored: int | None = None, **fields: Any) -> Manifest:
    m = sample_manifest(backup_id_for("orders", at(day)), size=stored if stored is not None else raw // 4)
    return m.model_copy(update={"raw": m.raw.model_copy(update={"size": raw}), **fields}).sealed()


def history(*raws: int) -> list[Manifest]:
    return [manifest(20 - i, raw=raw) for i, raw in enumerate(raws)]


@pytest.mark.parametrize(
    ("raw", "previous", "kind"),
    [
        (400, (1000, 1000, 1000), "shrunk"),
        (2100, (1000, 900, 1100), "grew"),
        (99, (1000, 1000), "near-empty"),
        (0, (4096,), "near-empty"),
        (400, (1000, 100_000, 1000, 1000), "shrunk"),  # the median shrugs off one outlier
    ],
)
def test_sizes_outside_the_factors_are_anomalies(raw: int, previous: tuple[int, ...], kind: str) -> None:
    found = size_anomaly(manifest(21, raw=raw), history(*previous))

    assert found is not None
    assert found.kind == kind


@pytest.mark.parametrize(
    ("raw", "previous"),
    [
        (600, (1000, 1000, 1000)),  # within the factors
        (1900, (1000, 1000, 1000)),
        (400, (1000, 1000)),  # a halving with too little history to call it
        (5000, (1000,)),  # growth with too little history
        (0, (0, 0, 0)),  # always empty is not news
        (1000, ()),  # the first backup of a database
    ],
)
def test_sizes_within_the_factors_or_without_enough_history_are_not(raw: int, previous: tuple[int, ...]) -> None:
    assert size_anomaly(manifest(21, raw=raw), history(*previous)) is None


def test_a_stored_size_out_of_line_is_flagged_when_the_raw_size_is_not() -> None:
    previous = [manifest(20 - i, raw=1_000_000, stored=250_000) for i in range(3)]

    found = size_anomaly(manifest(21, raw=1_000_000, stored=900_000), previous)

    assert found is not None
    assert (found.kind, found.measure, found.reference) == ("grew", "stored", 250_000)


def test_only_backups_of_the_same_kind_engine_and_compression_are_compared() -> None:
    # given three earlier backups that are not comparable: a drill, another engine, another compression
    previous = [
        manifest(20, raw=1000, type="drill"),
        manifest(19, raw=1000, engine="files"),
        manifest(18, raw=1000, compression=Compression(algorithm="gzip", level=6)),
    ]

    # then a backup a twentieth of their size is not compared with them, only with a comparable one
    assert size_anomaly(manifest(21, raw=50), previous) is None
    assert size_anomaly(manifest(21, raw=50), [*previous, manifest(17, raw=1000)]) is not None


def test_safety_snapshots_are_not_checked(store: S3Store, s3: Any) -> None:
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    assert check_size(store, manifest(21, raw=0, type="pre-restore")) is None
    assert calls == []


def test_an_anomaly_sentence_names_the_backup_the_sizes_and_what_to_check() -> None:
    anomaly = SizeAnomaly("orders-20261121T020000Z", "orders", "shrunk", "raw", 29_000, 204_800, 7)

    assert anomaly.sentence() == (
        "Backup orders-20261121T020000Z is 0.14x the median raw size of the previous 7 backups of orders "
        "(28.3 KiB against 200.0 KiB); it was committed, but check that the source still holds all its data."
    )


# -- the history: right backups, bounded cost ----------------------------------------------------


def test_recent_backups_are_the_newest_committed_ones_before_the_new_backup(store: S3Store) -> None:
    # given backups across a year boundary, one failed run, and a later backup (a retried older run)
    start = datetime(2026, 12, 26, 2, tzinfo=UTC)
    ids = [commit_backup(store, "orders", start + timedelta(days=i)) for i in range(10)]  # to 2027-01-04
    store.client.put_object(Bucket=BUCKET, Key="backups/orders/2027/01/03/orders-20270103T120000Z.sqlite.zst", Body=b"")
    commit_backup(store, "orders-archive", start)

    # when the history of the backup of 2027-01-03 is read
    recent = store.recent_backup_ids("orders", ids[8], limit=HISTORY)

    # then it is the seven committed ones before it, newest first, and nothing after it
    assert recent == list(reversed(ids[1:8]))


def test_fewer_backups_than_the_limit_gives_them_all(store: S3Store) -> None:
    first = commit_backup(store, "orders", at(1))
    second = commit_backup(store, "orders", at(2))

    assert store.recent_backup_ids("orders", backup_id_for("orders", at(3)), limit=HISTORY) == [second, first]
    assert store.recent_backup_ids("orders", first, limit=HISTORY) == []


def test_reading_the_history_costs_a_bounded_number_of_requests_whatever_the_number_of_backups(
    store: S3Store, s3: Any
) -> None:
    # given a database with eight daily backups and one with two hundred hourly ones
    for day in range(8):
        commit_backup(store, "few", at(10) + timedelta(days=day))
    for hour in range(200):
        commit_backup(store, "many", at(10) + timedelta(hours=hour))
    # Pages of 32 keys, so a listing proportional to the backups shows up as more requests.
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=32))
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))

    def requests_of(check: Any) -> list[str]:
        calls.clear()
        check()
        return list(calls)

    # when the size of a new backup of each is checked
    few = requests_of(lambda: check_size(store, new_backup("few")))
    many = requests_of(lambda: check_size(store, new_backup("many")))
    full_listing = requests_of(lambda: store.backup_ids("many"))  # control: what O(backups) would cost

    # then each reads seven manifests and lists a bounded number of folders, far less than a full listing
    assert few.count("GetObject") == many.count("GetObject") == HISTORY
    bound = 3 + HISTORY + RECENT_SPARE_DAYS  # years, months, days of the month, then one listing per day read
    assert few.count("ListObjectsV2") <= bound
    assert many.count("ListObjectsV2") <= few.count("ListObjectsV2")
    assert full_listing.count("ListObjectsV2") > many.count("ListObjectsV2")


def new_backup(database: str) -> Manifest:
    backup_id = backup_id_for(database, at(30))
    return manifest(30, raw=1000).model_copy(update={"database": database, "backup_id": backup_id})
