"""The allow-lists for database, target and backup id names, checked before any AWS call."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NoReturn

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backstop.adapters.s3_store import S3Store
from backstop.errors import InvalidNameError
from backstop.names import DATABASE_NAME, backup_id_for, check_database_name, check_target_name, parse_backup_id

STAMP = "20261121T020000Z"

HOSTILE = [
    pytest.param("../x", id="dotdot"),
    pytest.param("a/b", id="slash"),
    pytest.param("", id="empty"),
    pytest.param("a" * 1024, id="1KB"),
    pytest.param("a\x00b", id="NUL"),
    pytest.param("a\nb", id="newline"),
    pytest.param("orders\n", id="trailing-newline"),
    pytest.param("Orders", id="uppercase"),
    pytest.param("-orders", id="leading-dash"),
    pytest.param("_orders", id="leading-underscore"),
    pytest.param("a" * 64, id="64-chars"),
    pytest.param("or ders", id="space"),
    pytest.param("ord\u00e9rs", id="non-ascii"),
    pytest.param("orders.db", id="dot"),
]


def assert_safe_message(error: InvalidNameError) -> None:
    """The refusal is one printable line of bounded size, whatever the rejected value held."""
    message = str(error)
    assert len(message) < 250
    assert "\n" not in message
    assert "\x00" not in message


@pytest.mark.parametrize("name", HOSTILE)
def test_database_name_allow_list_refuses(name: str) -> None:
    with pytest.raises(InvalidNameError, match="Invalid database name") as caught:
        check_database_name(name)

    assert_safe_message(caught.value)


@pytest.mark.parametrize("name", HOSTILE)
def test_target_name_allow_list_refuses(name: str) -> None:
    with pytest.raises(InvalidNameError, match="Invalid target name") as caught:
        check_target_name(name)

    assert_safe_message(caught.value)


@pytest.mark.parametrize("name", HOSTILE)
def test_backup_id_allow_list_refuses_hostile_database_parts(name: str) -> None:
    with pytest.raises(InvalidNameError, match="Invalid backup id") as caught:
        parse_backup_id(f"{name}-{STAMP}")

    assert_safe_message(caught.value)


@pytest.mark.parametrize(
    "backup_id",
    [
        f"orders-{STAMP}\n",
        f"orders-{STAMP}/../x",
        f"orders-{STAMP}.manifest.json",
        "orders-20261121T020000z",
        "orders-2026-11-21T02:00:00Z",
        "orders-20261121",
        "orders",
        f"-{STAMP}",
        STAMP,
        "",
        "x" * 1024,
    ],
)
def test_backup_id_allow_list_refuses_malformed_ids(backup_id: str) -> None:
    with pytest.raises(InvalidNameError, match="Invalid backup id") as caught:
        parse_backup_id(backup_id)

    assert_safe_message(caught.value)


@pytest.mark.parametrize("stamp", ["20261321T020000Z", "20260230T020000Z", "20261121T250000Z", "20261121T026000Z"])
def test_backup_id_with_an_impossible_time_is_refused(stamp: str) -> None:
    with pytest.raises(InvalidNameError, match="not a real time"):
        parse_backup_id(f"orders-{stamp}")


def test_backup_id_of_another_database_is_refused() -> None:
    with pytest.raises(InvalidNameError, match="does not belong to database 'orders'"):
        parse_backup_id(f"invoices-{STAMP}", database="orders")


@pytest.mark.parametrize("name", ["orders", "a", "a" * 63, "db_1-prod", "0day", "orders-2026"])
def test_ordinary_names_are_accepted(name: str) -> None:
    assert check_database_name(name) == name
    assert check_target_name(name) == name


def test_backup_id_is_utc_whole_seconds() -> None:
    at = datetime(2026, 11, 21, 3, 0, 0, 999_999, tzinfo=timezone(timedelta(hours=1)))

    backup_id = backup_id_for("orders", at)

    assert backup_id == "orders-20261121T020000Z"
    assert parse_backup_id(backup_id) == ("orders", datetime(2026, 11, 21, 2, 0, tzinfo=UTC))


@pytest.mark.parametrize("name", HOSTILE)
def test_backup_id_for_refuses_hostile_database_names(name: str) -> None:
    with pytest.raises(InvalidNameError):
        backup_id_for(name, datetime(2026, 11, 21, 2, 0, tzinfo=UTC))


@given(
    database=st.from_regex(DATABASE_NAME, fullmatch=True),
    at=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2999, 12, 30),
        timezones=st.builds(timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))),
    ),
)
def test_backup_id_round_trips(database: str, at: datetime) -> None:
    backup_id = backup_id_for(database, at)

    assert parse_backup_id(backup_id, database) == (database, at.astimezone(UTC).replace(microsecond=0))


@given(
    first=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)),
    second=st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2999, 12, 30), timezones=st.just(UTC)),
)
def test_backup_ids_sort_like_their_times(first: datetime, second: datetime) -> None:
    """Listings return keys sorted as strings; "newest" relies on that order being the time order."""
    a, b = first.replace(microsecond=0), second.replace(microsecond=0)

    assert (backup_id_for("orders", a) < backup_id_for("orders", b)) == (a < b)


class _NoAws:
    """A client that fails the test if anything reaches AWS."""

    def __getattr__(self, operation: str) -> Callable[..., NoReturn]:
        def call(*_args: object, **_kwargs: object) -> NoReturn:
            raise AssertionError(f"S3 {operation} was called before the name was checked")

        return call


@pytest.mark.parametrize("name", HOSTILE)
def test_store_refuses_hostile_database_names_before_any_aws_call(name: str) -> None:
    store = S3Store(_NoAws(), bucket="backstop-test", prefix="backups")  # type: ignore[arg-type]  # a deliberate non-client
    now = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)
    calls: list[Any] = [
        lambda: store.newest_backup_id(name),
        lambda: store.earliest_backup_since(name, now),
        lambda: store.inventory(name),
        lambda: store.backup_ids(name),
        lambda: store.failure_count(name),
        lambda: store.acquire_run_lock(name, "me", now, timedelta(hours=1)),
        lambda: store.record_failure(name, f"orders-{STAMP}", now, RuntimeError("x")),
    ]

    for call in calls:
        with pytest.raises(InvalidNameError):
            call()


@pytest.mark.parametrize("name", HOSTILE)
def test_store_refuses_hostile_backup_ids_before_any_aws_call(name: str) -> None:
    store = S3Store(_NoAws(), bucket="backstop-test", prefix="backups")  # type: ignore[arg-type]  # a deliberate non-client
    backup_id = f"{name}-{STAMP}"

    for call in (
        lambda: store.get_manifest(backup_id),
        lambda: store.manifest_exists(backup_id),
        lambda: store.object_key(backup_id, "sqlite.zst"),
        lambda: store.manifest_key(backup_id),
    ):
        with pytest.raises(InvalidNameError):
            call()


@pytest.mark.parametrize("backup_id", ["../../x", f"invoices-{STAMP}", "a\nb"])
def test_store_refuses_hostile_backup_id_in_failure_record(backup_id: str) -> None:
    store = S3Store(_NoAws(), bucket="backstop-test", prefix="backups")  # type: ignore[arg-type]  # a deliberate non-client

    with pytest.raises(InvalidNameError):
        store.record_failure("orders", backup_id, datetime(2026, 11, 21, 2, 0, tzinfo=UTC), RuntimeError("x"))
