"""Finding backups from listings: newest, earliest since a time, inventory, failure records."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from backstop.adapters.s3_store import S3Store
from backstop.errors import SourceError
from backstop.names import backup_id_for
from tests.conftest import BUCKET
from tests.unit.test_manifest import sample_manifest


def at(year: int, month: int, day: int, hour: int = 2) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def commit(store: S3Store, database: str, when: datetime, size: int = 10) -> str:
    """A committed backup: its artifact, then its manifest."""
    backup_id = backup_id_for(database, when)
    store.client.put_object(Bucket=BUCKET, Key=store.object_key(backup_id, "sqlite.zst"), Body=b"x" * size)
    assert store.put_manifest(sample_manifest(backup_id, size=size), {})
    return backup_id


def uncommitted(store: S3Store, database: str, when: datetime, size: int = 10) -> str:
    """An artifact whose manifest was never written (a failed or interrupted run)."""
    backup_id = backup_id_for(database, when)
    store.client.put_object(Bucket=BUCKET, Key=store.object_key(backup_id, "sqlite.zst"), Body=b"x" * size)
    return backup_id


def count_requests(s3: Any) -> list[str]:
    """Every S3 API call the client makes from now on, by operation name."""
    calls: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: calls.append(model.name))
    return calls


def daily(start: datetime, days: int) -> Iterable[datetime]:
    return (start + timedelta(days=i) for i in range(days))


# -- newest ----------------------------------------------------------------------------------------


def test_no_backup_means_no_newest(store: S3Store) -> None:
    assert store.newest_backup_id("orders") is None


def test_newest_backup_walks_years_months_and_days(store: S3Store) -> None:
    for when in [at(2025, 12, 31), at(2026, 1, 15), at(2026, 2, 9), at(2026, 2, 10, 1), at(2026, 2, 10, 23)]:
        commit(store, "orders", when)
    for when in [at(2024, 11, 30), at(2026, 1, 31)]:
        commit(store, "orders", when)

    assert store.newest_backup_id("orders") == "orders-20260210T230000Z"


def test_newest_backup_compares_numbers_not_just_text(store: S3Store) -> None:
    # September must not win over October, nor the 9th over the 10th.
    commit(store, "orders", at(2026, 9, 30))
    commit(store, "orders", at(2026, 10, 1))

    assert store.newest_backup_id("orders") == "orders-20261001T020000Z"


def test_newest_backup_ignores_artifacts_without_a_manifest(store: S3Store) -> None:
    commit(store, "orders", at(2026, 3, 1))
    uncommitted(store, "orders", at(2026, 3, 1, 12))
    uncommitted(store, "orders", at(2026, 3, 2))
    uncommitted(store, "orders", at(2027, 1, 1))

    assert store.newest_backup_id("orders") == "orders-20260301T020000Z"


def test_newest_backup_is_none_when_only_uncommitted_artifacts_exist(store: S3Store) -> None:
    uncommitted(store, "orders", at(2026, 3, 2))

    assert store.newest_backup_id("orders") is None


def test_newest_backup_of_one_database_ignores_similar_names(store: S3Store) -> None:
    commit(store, "orders", at(2026, 1, 1))
    commit(store, "orders-archive", at(2026, 6, 1))
    commit(store, "order", at(2026, 7, 1))

    assert store.newest_backup_id("orders") == "orders-20260101T020000Z"


def test_newest_backup_costs_the_same_requests_whatever_the_number_of_backups(store: S3Store, s3: Any) -> None:
    commit(store, "few", at(2026, 3, 1))
    commit(store, "few", at(2026, 3, 2))
    commit(store, "many", at(2023, 6, 1))
    for when in daily(at(2024, 12, 1), 90):  # three months of daily backups, across a new year
        commit(store, "many", when)
    commit(store, "many", at(2025, 2, 28, 14))
    # Pages of 32 keys (a month of days fits in one), so a listing proportional to the backups shows up as requests.
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=32))

    calls = count_requests(s3)
    assert store.newest_backup_id("few") == "few-20260302T020000Z"
    few = len(calls)
    calls.clear()
    assert store.newest_backup_id("many") == "many-20250228T140000Z"
    many = len(calls)
    calls.clear()
    assert len(store.backup_ids("many")) == 92  # control: a full listing of the same backups ...
    full_listing = len(calls)

    assert many == few <= 4  # years, months of the newest year, days of the newest month, keys of that day
    assert full_listing > many  # ... does cost more, so the counter would see an O(backups) walk


# -- earliest since --------------------------------------------------------------------------------


def test_earliest_backup_since_finds_the_first_committed_one(store: S3Store) -> None:
    for when in [at(2026, 2, 28, 23), at(2026, 3, 3), at(2026, 3, 10, 5), at(2026, 3, 20)]:
        commit(store, "orders", when)
    uncommitted(store, "orders", at(2026, 3, 15))
    expected = {
        at(2026, 1, 1, 0): at(2026, 2, 28, 23),
        at(2026, 3, 1, 0): at(2026, 3, 3),
        at(2026, 3, 3, 0): at(2026, 3, 3),
        at(2026, 3, 4, 0): at(2026, 3, 10, 5),
        at(2026, 3, 11, 0): at(2026, 3, 20),  # the uncommitted artifact of the 15th is not a backup
        at(2026, 3, 21, 0): None,
        at(2027, 1, 1, 0): None,
    }

    found = {since: store.earliest_backup_since("orders", since) for since in expected}

    assert found == expected


def test_earliest_backup_since_crosses_a_year_boundary(store: S3Store) -> None:
    commit(store, "orders", at(2026, 12, 31))
    commit(store, "orders", at(2027, 1, 2))

    assert store.earliest_backup_since("orders", at(2027, 1, 1, 0)) == at(2027, 1, 2)
    assert store.earliest_backup_since("orders", at(2026, 12, 31, 0)) == at(2026, 12, 31)


def test_earliest_backup_since_is_one_request_when_a_backup_follows(store: S3Store, s3: Any) -> None:
    for when in daily(at(2026, 1, 1), 45):
        commit(store, "orders", when)
    s3.meta.events.register("before-parameter-build.s3.ListObjectsV2", lambda params, **_: params.update(MaxKeys=20))

    calls = count_requests(s3)
    found = store.earliest_backup_since("orders", at(2026, 2, 1, 0))

    assert found == at(2026, 2, 1)
    assert calls == ["ListObjectsV2"]


# -- inventory and failure records -----------------------------------------------------------------


def test_inventory_lists_committed_backups_with_their_stored_size(store: S3Store) -> None:
    a = commit(store, "orders", at(2026, 3, 1), size=100)
    b = commit(store, "orders", at(2026, 3, 2), size=250)
    uncommitted(store, "orders", at(2026, 3, 3), size=999)
    commit(store, "invoices", at(2026, 3, 1), size=7)

    assert store.inventory("orders") == {a: 100, b: 250}
    assert store.backup_ids("orders") == [a, b]


def test_inventory_shows_a_committed_backup_whose_artifact_vanished_as_empty(store: S3Store, s3: Any) -> None:
    backup_id = commit(store, "orders", at(2026, 3, 1), size=100)
    s3.delete_object(Bucket=BUCKET, Key=store.object_key(backup_id, "sqlite.zst"))

    assert store.inventory("orders") == {backup_id: 0}


def test_failed_runs_are_counted_per_database(store: S3Store, s3: Any) -> None:
    store.record_failure("orders", "orders-20260301T020000Z", at(2026, 3, 1), SourceError("disk on fire"))
    store.record_failure("orders", "orders-20260302T020000Z", at(2026, 3, 2), SourceError("disk on fire"))
    store.record_failure("invoices", "invoices-20260302T020000Z", at(2026, 3, 2), SourceError("locked"))

    assert store.failure_count("orders") == 2
    assert store.failure_count("invoices") == 1
    assert store.failure_count("customers") == 0
    assert store.newest_backup_id("orders") is None
    assert store.inventory("orders") == {}
    record = s3.get_object(Bucket=BUCKET, Key="backups/_failures/orders/orders-20260302T020000Z.json")
    assert b'"error": "SourceError"' in record["Body"].read()
