"""Views, triggers, routines and events come back from a restore exactly as they were created.

A view created under ``SET NAMES utf8mb3`` must still report ``utf8mb3`` after a restore, a trigger
created under a non-default ``sql_mode`` must keep it, and every object keeps its DEFINER: the swap
recreates them all in the target, so it must recreate them under their recorded session settings.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_mysql_engine import (
    admin,
    execute,
    new_database,  # noqa: F401 - the fixture
    query,
)
from tests.engines.test_mysql_restore import NAME, databases_like, drop_derived, entry, url, yes
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("mysql")

# A mode the server does not default to, and that changes how the bodies below are parsed.
MODE = "ANSI_QUOTES,NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES"  # in the order the server reports it


@pytest.fixture
def definer() -> Iterator[str]:
    """An account that owns the objects (not the restoring user), dropped afterwards; nobody logs in as it."""
    name = f"bs_owner_{uuid.uuid4().hex[:8]}"
    execute(
        "mysql",
        f"CREATE USER '{name}'@'%' IDENTIFIED BY '{uuid.uuid4().hex}'",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON *.* TO '{name}'@'%'",  # what its views and routines do
    )
    yield f"`{name}`@`%`"
    execute("mysql", f"DROP USER IF EXISTS '{name}'@'%'")


def create_objects(dbname: str, owner: str, names: str, mode: str, label: str) -> None:
    """A table and a view, trigger, procedure, function and event on it, created under ``names`` and ``mode``.

    Statements are sent as bytes in the charset ``names`` sets, the way a client connected with that
    character set sends them; ``label`` holds a character outside ASCII (in that charset).
    """
    codec = {"utf8mb3": "utf-8", "latin1": "cp1252"}[names]
    tail = "\\" if "NO_BACKSLASH_ESCAPES" in mode else ""  # a backslash that ends a string only in that mode
    with admin(dbname) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE TABLE {label}_t (id INT PRIMARY KEY, note VARCHAR(40)) CHARSET utf8mb4")
        cur.execute(f"INSERT INTO {label}_t VALUES (1, 'one'), (2, 'two')")
        cur.execute(f"SET NAMES {names}")
        cur.execute("SET SESSION sql_mode = %s", (mode,))
        for statement in (
            f'CREATE DEFINER={owner} SQL SECURITY DEFINER VIEW "{label}_v" AS '
            f"SELECT id, CONCAT(note, ' {label} é') AS note FROM \"{label}_t\"",
            f'CREATE DEFINER={owner} TRIGGER "{label}_tr" BEFORE INSERT ON "{label}_t" FOR EACH ROW '
            f"SET NEW.note = CONCAT(NEW.note, ' é{tail}')",
            f'CREATE DEFINER={owner} PROCEDURE "{label}_p"(OUT n INT) SELECT COUNT(*) INTO n FROM "{label}_t"',
            f"CREATE DEFINER={owner} FUNCTION \"{label}_f\"() RETURNS VARCHAR(10) DETERMINISTIC RETURN 'é{tail}'",
            f'CREATE DEFINER={owner} EVENT "{label}_e" ON SCHEDULE EVERY 1 DAY DISABLE '
            f'DO DELETE FROM "{label}_t" WHERE id < 0',
        ):
            cur.execute(statement.encode(codec))


def metadata(dbname: str) -> dict[str, tuple[Any, ...]]:
    """What SHOW CREATE reports for every view, trigger, routine and event of ``dbname``, and each DEFINER.

    Read with ``character_set_results = binary``: the statements' bytes exactly as the server keeps
    them. The trigger's creation time is left out (a restore creates it anew).
    """
    found: dict[str, tuple[Any, ...]] = {}
    with admin(dbname) as conn, conn.cursor() as cur:
        cur.execute("SET character_set_results = binary")
        objects = query(
            dbname,
            "SELECT 'VIEW', TABLE_NAME, DEFINER FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE() "
            "UNION ALL SELECT 'TRIGGER', TRIGGER_NAME, DEFINER FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() UNION ALL SELECT ROUTINE_TYPE, ROUTINE_NAME, DEFINER "
            "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE() UNION ALL "
            "SELECT 'EVENT', EVENT_NAME, DEFINER FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()",
        )
        for kind, name, owner in objects:
            cur.execute(f"SHOW CREATE {kind} `{name}`")
            row = cur.fetchone()
            assert row is not None
            found[f"{kind} {name}"] = (owner, *(row[:-1] if kind == "TRIGGER" else row))
    return found


def settings(found: dict[str, tuple[Any, ...]]) -> dict[str, tuple[bytes, ...]]:
    """Each object's character_set_client, collation_connection and (but for views) sql_mode."""
    picked: dict[str, tuple[bytes, ...]] = {}
    for key, row in found.items():
        kind = key.split()[0]
        if kind == "VIEW":
            picked[key] = (row[3], row[4])
        elif kind == "EVENT":
            picked[key] = (row[5], row[6], row[2])
        else:
            picked[key] = (row[4], row[5], row[2])
    return picked


def test_a_restore_keeps_definer_sql_mode_and_character_set_of_every_object(
    new_database: Callable[[], str],  # noqa: F811
    definer: str,
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given a source whose objects were created under utf8mb3 (and latin1) with a non-default sql_mode,
    # owned by another account than the restoring one, and an existing target with objects of its own
    source, target = new_database(), new_database()
    create_objects(source, definer, "utf8mb3", MODE, "src")
    create_objects(source, definer, "latin1", "ANSI_QUOTES", "lat")
    create_objects(target, definer, "utf8mb3", MODE, "old")
    expected, old = metadata(source), metadata(target)
    assert set(settings(expected).values()) == {
        (b"utf8mb3", b"utf8mb3_general_ci"),
        (b"latin1", b"latin1_swedish_ci"),
        (b"utf8mb3", b"utf8mb3_general_ci", MODE.encode()),
        (b"latin1", b"latin1_swedish_ci", b"ANSI_QUOTES"),
    }
    config = make_config(entry(source))
    run_backup(config, store, at(21), database=NAME)

    try:
        # when the backup is restored into the target through the restore service
        outcome = ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

        # then every object of the target reports what it reported in the source, byte for byte,
        # and the kept pre-restore copy reports what the old target's objects reported
        assert outcome.restored and outcome.warnings == ()
        assert metadata(target) == expected
        assert databases_like(f"{target}_pre_restore_") == [outcome.pre_restore]
        assert metadata(str(outcome.pre_restore)) == old
    finally:
        drop_derived(target)
