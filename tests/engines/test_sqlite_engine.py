"""The SQLite engine on awkward but legal databases: hostile identifiers, custom migration tables,
configured validation queries, and a source that disappears."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from backstop.errors import IntegrityError, SourceError
from backstop.services.restore import RestoreService
from tests.conftest import create_orders_db, table_rows
from tests.services import at, leftovers, open_uploads, run_backup

HOSTILE_TABLE = 'o"rders; DROP TABLE customers; --'


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def every_row(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Like tests.conftest.table_rows, but safe for table names holding double quotes."""
    with closing(sqlite3.connect(path)) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]
        return {n: conn.execute(f"SELECT * FROM {quoted(n)} ORDER BY 1").fetchall() for n in names}


def test_table_names_that_look_like_sql_are_counted_and_restored_not_executed(
    make_config: Callable[..., Any], store: Any, orders_db: Path, tmp_path: Path
) -> None:
    # given a database with a table whose name is an injection attempt
    with closing(sqlite3.connect(orders_db)) as conn:
        conn.execute(f"CREATE TABLE {quoted(HOSTILE_TABLE)} (id INTEGER PRIMARY KEY)")
        conn.executemany(f"INSERT INTO {quoted(HOSTILE_TABLE)} VALUES (?)", [(1,), (2,)])
        conn.commit()
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})

    # when it is backed up and restored
    manifest = run_backup(config, store, at(21)).manifest
    target = tmp_path / "restored.db"
    RestoreService(config, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the table is counted under its real name, and every other table (customers!) survived
    assert manifest.tables[HOSTILE_TABLE].rows == 2
    assert manifest.tables["customers"].rows == 100
    assert every_row(target) == every_row(orders_db)
    assert every_row(target)[HOSTILE_TABLE] == [(1,), (2,)]


def test_a_configured_migrations_table_sets_the_schema_version(
    make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given a database whose migrations live in a table of its own naming
    path = tmp_path / "app.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(
            """
            CREATE TABLE "app migrations" (step INTEGER PRIMARY KEY, applied TEXT);
            INSERT INTO "app migrations" VALUES (1, 'a'), (7, 'b'), (3, 'c');
            """
        )
    config = make_config({"name": "app", "engine": "sqlite", "path": str(path), "migrations_table": "app migrations"})

    # when it is backed up
    manifest = run_backup(config, store, at(21), database="app").manifest

    # then the schema version is the highest step of that table
    assert manifest.schema_version == "app migrations:7"


def test_a_missing_source_file_fails_clearly_and_is_never_created(
    make_config: Callable[..., Any], store: Any, s3: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a configured database whose file is gone (a wrong path, an unmounted volume)
    path = tmp_path / "gone.db"
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(path)})

    # when it is backed up
    with pytest.raises(SourceError, match="does not exist"):
        run_backup(config, store, at(21))

    # then no empty database was created in its place and nothing was committed or left behind
    assert not path.exists()
    assert not store.manifest_exists("orders-20261121T020000Z")
    assert open_uploads(s3) == []
    assert leftovers(work_dir) == []


def test_a_failing_configured_validation_query_refuses_the_restore_before_the_target_is_touched(
    make_config: Callable[..., Any], store: Any, orders_db: Path, tmp_path: Path
) -> None:
    # given a validation query that cannot succeed on the backup, and an existing target
    config = make_config(
        {
            "name": "orders",
            "engine": "sqlite",
            "path": str(orders_db),
            "validation_queries": ["SELECT count(*) FROM table_the_app_requires"],
        }
    )
    run_backup(config, store, at(21))
    target = create_orders_db(tmp_path / "app.db", rows=5)
    old = table_rows(target)

    # when the backup is restored over the target
    with pytest.raises(IntegrityError, match="validation query"):
        RestoreService(config, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the staged copy failed the query, so the target holds its old data and no pre-restore copy was made
    assert table_rows(target) == old
    assert not list(tmp_path.glob("app.db.pre-restore-*"))
