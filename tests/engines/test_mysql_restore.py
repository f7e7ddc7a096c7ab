"""Restores into the real MariaDB server: fresh database, validation, one RENAME TABLE swap, and every failure path."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from click.testing import CliRunner

from backstop.adapters.s3_store import S3Store
from backstop.cli import main
from backstop.engines import mysql_restore
from backstop.errors import ManualInterventionError, RestoreError, ValidationError
from backstop.manifest import Manifest
from backstop.services.server_restore import ServerRestoreService
from tests.conftest import BUCKET
from tests.engines.test_mysql_engine import (
    HOST,
    PORT,
    admin,
    build_shop,
    execute,
    logical_content,
    new_database,  # noqa: F401 - the fixture
    query,
    row_counts,
)
from tests.services import at, leftovers, run_backup

pytestmark = pytest.mark.xdist_group("mysql")

NAME = "shop"


def entry(dbname: str, **extra: Any) -> dict[str, Any]:
    return {"name": NAME, "engine": "mysql", "host": HOST, "port": PORT, "dbname": dbname, "user": "root", **extra}


def url(dbname: str) -> str:
    return f"mysql://root@{HOST}:{PORT}/{dbname}"


def databases_like(prefix: str) -> list[str]:
    rows = query("mysql", f"SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '{prefix}%'")
    return sorted(str(r[0]) for r in rows)


def drop_derived(target: str) -> None:
    for name in databases_like(f"{target}\\_"):
        execute("mysql", f"DROP DATABASE IF EXISTS `{name}`")


def yes(_plan: object) -> bool:
    return True


def old_application(dbname: str) -> None:
    """What the target held before the restore: other tables, a trigger, a view, a routine and an event."""
    execute(
        dbname,
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT) ENGINE=InnoDB",
        "CREATE TABLE notes_log (id INT AUTO_INCREMENT PRIMARY KEY, note_id INT) ENGINE=InnoDB",
        "INSERT INTO notes SELECT seq, CONCAT('old ', seq) FROM seq_1_to_50",
        "CREATE TRIGGER notes_logged AFTER INSERT ON notes FOR EACH ROW "
        "INSERT INTO notes_log (note_id) VALUES (NEW.id)",
        "CREATE VIEW recent_notes AS SELECT id FROM notes WHERE id > 40",
        "CREATE VIEW recent_count AS SELECT COUNT(*) AS n FROM recent_notes",
        "CREATE FUNCTION note_label(i INT) RETURNS VARCHAR(20) DETERMINISTIC RETURN CONCAT('note ', i)",
        "CREATE EVENT purge_notes ON SCHEDULE EVERY 1 DAY DO DELETE FROM notes_log WHERE id < 0",
    )


def everything(dbname: str) -> dict[str, Any]:
    """Logical content plus the definitions that a swap recreates, to compare a target before and after."""
    content = logical_content(dbname)
    content["definitions"] = sorted(
        (str(kind), str(name), str(body))
        for kind, name, body in query(
            dbname,
            "SELECT 'trigger', TRIGGER_NAME, ACTION_STATEMENT FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = DATABASE() UNION ALL "
            "SELECT 'routine', ROUTINE_NAME, ROUTINE_DEFINITION FROM information_schema.ROUTINES "
            "WHERE ROUTINE_SCHEMA = DATABASE() UNION ALL "
            "SELECT 'event', EVENT_NAME, CONCAT(STATUS, ' ', EVENT_DEFINITION) FROM information_schema.EVENTS "
            "WHERE EVENT_SCHEMA = DATABASE() UNION ALL "
            "SELECT 'view', TABLE_NAME, REPLACE(VIEW_DEFINITION, DATABASE(), '?') FROM information_schema.VIEWS "
            "WHERE TABLE_SCHEMA = DATABASE()",
        )
    )
    return content


@pytest.fixture
def backed_up(
    new_database: Callable[[], str],  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
) -> tuple[str, Manifest, Callable[..., Any]]:
    """A source with the shop schema (views, routines, a trigger, an event, FKs) and its committed backup."""
    source = new_database()
    build_shop(source, orders=3_000)
    manifest = run_backup(make_config(entry(source)), store, at(21), database=NAME).manifest
    return source, manifest, make_config


@pytest.fixture
def target(new_database: Callable[[], str]) -> Iterator[str]:  # noqa: F811
    """An existing target database holding other data; every database derived from it is dropped afterwards."""
    name = new_database()
    old_application(name)
    yield name
    drop_derived(name)


def test_restore_latest_replaces_an_existing_target_in_one_swap_and_keeps_the_old_one(
    backed_up: tuple[str, Manifest, Callable[..., Any]], target: str, store: S3Store, work_dir: Path
) -> None:
    # given a backup, and an existing target with its own tables, trigger, views, routine, event and a session
    source, manifest, make_config = backed_up
    before = everything(target)
    plans: list[Any] = []
    idle = admin(target)

    # when latest is restored into it
    outcome = ServerRestoreService(make_config(entry(source)), store).restore(
        NAME, "latest", url(target), dry_run=False, confirm=lambda plan: not plans.append(plan)
    )
    pre = databases_like(f"{target}_pre_restore_")

    # then the target equals the source: data, FKs, views, routines, triggers, events, AUTO_INCREMENT
    assert outcome.restored and outcome.warnings == ()
    assert plans[0].target_exists and plans[0].current == {"notes": 50, "notes_log": 0}
    assert plans[0].sessions >= 1
    assert everything(target) == everything(source)
    assert {n: s.rows for n, s in manifest.tables.items()} == row_counts(target)
    # and the old target is kept whole under the reported name, its event disabled
    assert pre == [outcome.pre_restore]
    kept = everything(pre[0])
    assert kept["checksums"] == before["checksums"]
    assert [d for d in kept["definitions"] if d[0] != "event"] == [d for d in before["definitions"] if d[0] != "event"]
    assert query(pre[0], "SELECT STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()") == [
        ("DISABLED",)
    ]
    # and the session on the old target was disconnected, no fresh database or file is left
    with pytest.raises(pymysql.MySQLError), idle.cursor() as cur:
        cur.execute("SELECT 1")
    assert databases_like(f"{target}_restore_") == []
    assert leftovers(work_dir) == []


def test_the_restored_target_behaves_like_the_source(
    backed_up: tuple[str, Manifest, Callable[..., Any]], target: str, store: S3Store
) -> None:
    # given a restored target
    source, _manifest, make_config = backed_up
    ServerRestoreService(make_config(entry(source)), store).restore(
        NAME, "latest", url(target), dry_run=False, confirm=yes
    )
    audit_before = row_counts(target)["audit"]

    # when the application writes to it
    execute(target, "INSERT INTO orders (customer_id, amount_cents) VALUES (1, 5000)")

    # then the trigger fires into the target's own audit table, the FK points at the target's customers,
    # and views and routines read the target's tables
    assert row_counts(target)["audit"] == audit_before + 1
    with pytest.raises(pymysql.err.IntegrityError):
        execute(target, "INSERT INTO orders (customer_id, amount_cents) VALUES (999999, 1)")
    assert query(
        target,
        "SELECT REFERENCED_TABLE_SCHEMA FROM information_schema.KEY_COLUMN_USAGE "
        "WHERE TABLE_SCHEMA = DATABASE() AND REFERENCED_TABLE_NAME IS NOT NULL",
    ) == [(target,)]
    assert query(target, "SELECT COUNT(*) FROM big_orders")[0][0] > 0
    assert str(query(target, "SELECT cents_to_units(12345)")[0][0]) == "123.45"


def test_restore_into_a_database_that_does_not_exist_creates_it(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store
) -> None:
    # given a backup and a target name that does not exist on the server
    source, manifest, make_config = backed_up
    target = f"{source}_new"
    try:
        # when it is restored there
        outcome = ServerRestoreService(make_config(entry(source)), store).restore(
            NAME, manifest.backup_id, url(target), dry_run=False, confirm=yes
        )

        # then the target exists with the backup's content and there is no pre-restore database
        assert outcome.restored and outcome.pre_restore is None
        assert everything(target) == everything(source)
        assert databases_like(f"{target}\\_") == []
    finally:
        drop_derived(target)
        execute("mysql", f"DROP DATABASE IF EXISTS `{target}`")


def test_a_dry_run_shows_the_plan_and_creates_nothing(
    backed_up: tuple[str, Manifest, Callable[..., Any]], target: str, store: S3Store, work_dir: Path
) -> None:
    source, _manifest, make_config = backed_up
    before = everything(target)

    outcome = ServerRestoreService(make_config(entry(source)), store).restore(
        NAME, "latest", url(target), dry_run=True, confirm=lambda _p: pytest.fail("a dry run asks nothing")
    )

    assert not outcome.restored
    assert outcome.plan.current == {"notes": 50, "notes_log": 0}
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []


def test_a_failing_validation_query_leaves_the_target_unchanged(
    backed_up: tuple[str, Manifest, Callable[..., Any]], target: str, store: S3Store, work_dir: Path
) -> None:
    # given a validation query the restored data fails
    source, _manifest, make_config = backed_up
    before = everything(target)
    queries = ["SELECT COUNT(*) FROM customers", "SELECT COUNT(*) > 1000000 FROM orders"]
    config = make_config(entry(source, validation_queries=queries))

    # when it is restored
    with pytest.raises(ValidationError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

    # then the failure names the query, the target is as it was and no fresh database is left
    assert "Validation query 2" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []


def fake_client(bin_dir: Path) -> None:
    """A ``mariadb`` client first on PATH that loads the first half of the dump, then fails."""
    real = "/usr/bin/mariadb" if Path("/usr/bin/mariadb").exists() else "/usr/bin/mysql"
    bin_dir.mkdir()
    script = bin_dir / "mariadb"
    script.write_text(
        f"""#!/bin/bash
input=$(mktemp); cat > "$input"
head -c $(( $(stat -c %s "$input") / 2 )) "$input" | head -n -1 | {real} "$@" || true
rm -f "$input"
echo 'ERROR 2013 (HY000): injected failure: lost connection' >&2
exit 1
"""
    )
    script.chmod(0o755)


def test_a_load_failing_halfway_leaves_the_target_unchanged(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    target: str,
    store: S3Store,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a client that loads half of the dump into the fresh database and then fails
    source, _manifest, make_config = backed_up
    before = everything(target)
    fake_client(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    # when it is restored
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(make_config(entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the client's failure is reported, the target is as it was and nothing is left behind
    assert "injected failure" in str(failure.value) and "exit 1" in str(failure.value)
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []


def test_a_swap_failing_after_the_rename_is_undone_completely(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    target: str,
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a swap whose recreation of the backup's view fails, after every table was renamed
    source, _manifest, make_config = backed_up
    before = everything(target)
    real_create = mysql_restore.MysqlServer._create

    def failing_create(self: mysql_restore.MysqlServer, dbname: str, definition: Any, **kwargs: Any) -> None:
        if dbname == target and definition.name == "big_orders":
            raise pymysql.err.OperationalError(1105, "injected failure creating a view")
        real_create(self, dbname, definition, **kwargs)

    monkeypatch.setattr(mysql_restore.MysqlServer, "_create", failing_create)

    # when it is restored
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(make_config(entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the failure is named and the target has its old tables, trigger, views, routine and event back
    assert "injected failure creating a view" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []


def test_a_swap_whose_undo_fails_keeps_every_table_and_asks_for_intervention(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    target: str,
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a swap that fails after the rename, and an undo whose rename back fails too
    source, _manifest, make_config = backed_up
    before = everything(target)
    real_execute = mysql_restore.MysqlServer._execute
    renames = []

    def failing_execute(self: mysql_restore.MysqlServer, statement: str | bytes, args: Any = None) -> None:
        text = statement.decode("latin-1") if isinstance(statement, bytes) else statement  # definitions are bytes
        if text.startswith("RENAME TABLE"):
            renames.append(text)
            if len(renames) == 2:
                raise pymysql.err.OperationalError(1105, "injected failure renaming back")
        if text.startswith("CREATE") and "VIEW `big_orders`" in text:
            raise pymysql.err.OperationalError(1105, "injected failure creating a view")
        real_execute(self, statement, args)

    monkeypatch.setattr(mysql_restore.MysqlServer, "_execute", failing_execute)

    # when it is restored
    with pytest.raises(ManualInterventionError) as failure:
        ServerRestoreService(make_config(entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the message says so and where the data is, and the old tables are intact in the pre-restore database
    message = str(failure.value)
    assert "manual intervention needed" in message
    pre = databases_like(f"{target}_pre_restore_")
    assert len(pre) == 1 and pre[0] in message
    assert everything(pre[0])["checksums"] == before["checksums"]
    assert row_counts(target) == row_counts(source)


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("mysql://root:hunter2-secret@127.0.0.1:3306/x", "passwords never go on the command line"),
        ("mysql://127.0.0.1:3306/", "plain database name"),
        ("mysql://127.0.0.1/mysql", "server's own database"),
        ("mysql://127.0.0.1/information_schema", "server's own database"),
        ("postgresql://127.0.0.1/x", "must be a mysql://"),
    ],
)
def test_bad_urls_are_refused_in_one_sentence_without_the_password(
    bad: str, fragment: str, make_config: Callable[..., Any], store: S3Store
) -> None:
    config = make_config(entry("anything"))
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", bad, dry_run=False, confirm=yes)
    assert fragment in str(failure.value)
    assert "hunter2" not in str(failure.value)


def test_cli_restore_to_a_mysql_url_with_yes_restores(
    backed_up: tuple[str, Manifest, Callable[..., Any]], target: str, tmp_path: Path, work_dir: Path
) -> None:
    # given a config file naming the backed-up database, and an existing target
    source, manifest, _make_config = backed_up
    config = tmp_path / "backstop.yaml"
    config.write_text(
        yaml.safe_dump({"bucket": BUCKET, "prefix": "backups", "work_dir": str(work_dir), "databases": [entry(source)]})
    )

    # when `backstop restore shop latest --to mysql://... --yes` runs
    result = CliRunner().invoke(
        main, ["--config", str(config), "restore", NAME, "latest", "--to", url(target), "--yes"]
    )

    # then it exits 0, the target holds the backup and the old database is named
    assert result.exit_code == 0, result.output
    assert row_counts(target) == row_counts(source)
    assert f"{target}_pre_restore_" in result.stdout
    assert manifest.backup_id in result.stdout
