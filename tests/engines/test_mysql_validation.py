"""Validation queries of a MySQL/MariaDB restore only read: one that writes fails the restore and changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import ValidationError
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_mysql_engine import (
    build_shop,
    execute,
    new_database,  # noqa: F401 - the fixture
    query,
)
from tests.engines.test_mysql_restore import (
    NAME,
    databases_like,
    drop_derived,
    entry,
    everything,
    old_application,
    url,
    yes,
)
from tests.services import at, leftovers, run_backup

pytestmark = pytest.mark.xdist_group("mysql")


@pytest.fixture
def source(new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store) -> str:  # noqa: F811
    """The shop schema with a function and a procedure that write, backed up."""
    name = new_database()
    build_shop(name, orders=2_000)
    execute(
        name,
        "CREATE FUNCTION touch_orders() RETURNS INT MODIFIES SQL DATA "
        "BEGIN UPDATE orders SET note = 'changed by validation'; RETURN 1; END",
        "CREATE PROCEDURE commit_and_touch() "
        "BEGIN COMMIT; UPDATE orders SET note = 'changed by validation'; SELECT 1; END",
    )
    run_backup(make_config(entry(name)), store, at(21), database=NAME)
    return name


@pytest.fixture
def target(new_database: Callable[[], str]) -> Iterator[str]:  # noqa: F811
    name = new_database()
    old_application(name)
    yield name
    drop_derived(name)


def restore(make_config: Callable[..., Any], store: S3Store, source: str, target: str, queries: list[str]) -> None:
    config = make_config(entry(source, validation_queries=queries))
    ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)


def test_a_validation_query_calling_a_function_that_writes_fails_and_changes_nothing(
    source: str, target: str, make_config: Callable[..., Any], store: S3Store, work_dir: Path
) -> None:
    # given a validation query that reads, but through a function of the backup that updates every order
    before = everything(target)

    # when the backup is restored with it
    with pytest.raises(ValidationError) as failure:
        restore(make_config, store, source, target, ["SELECT COUNT(*) FROM orders", "SELECT touch_orders()"])

    # then the query fails in its read-only transaction, the target is as it was, no database is left
    message = str(failure.value)
    assert "Validation query 2 failed" in message and "READ ONLY" in message
    assert "was not touched" in message
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM orders WHERE id <= 10 RETURNING id",
        "INSERT INTO audit (order_id) SELECT id FROM orders WHERE id <= 10 RETURNING order_id",
        "CALL commit_and_touch()",
        "/* a comment first */ UPDATE orders SET note = 'changed by validation'",
        "/*!50000 CREATE TABLE leftover (ok INT) */",
    ],
)
def test_a_validation_query_that_is_not_a_query_is_refused_before_the_server_is_touched(
    statement: str, source: str, target: str, make_config: Callable[..., Any], store: S3Store, work_dir: Path
) -> None:
    # given a validation query that modifies data, calls a procedure that commits, or is DDL
    before = everything(target)

    # when the backup is restored with it
    with pytest.raises(ValidationError) as failure:
        restore(make_config, store, source, target, ["SELECT 1", statement])

    # then the restore is refused in one sentence naming the query, before any database was created
    message = str(failure.value)
    assert message.startswith("Validation query 2 is not a read-only query") and message.count(". ") == 0
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []


def test_read_only_validation_queries_still_pass(
    source: str, target: str, make_config: Callable[..., Any], store: S3Store
) -> None:
    # given validation queries that only read (a CTE, a subquery, SHOW, a parenthesised SELECT)
    queries = [
        "WITH big AS (SELECT id FROM orders WHERE amount_cents > 100) SELECT COUNT(*) > 0 FROM big",
        "  -- the count\n SELECT (SELECT COUNT(*) FROM customers) = 1000",
        "SHOW TABLES",
        "(SELECT cents_to_units(12345) = 123.45)",
    ]

    # when the backup is restored with them, then it is restored and nothing the queries could reach changed
    restore(make_config, store, source, target, queries)
    assert query(target, "SELECT COUNT(*) FROM orders WHERE note = 'changed by validation'") == [(0,)]
    assert query(source, "SELECT COUNT(*) FROM orders WHERE note = 'changed by validation'") == [(0,)]
