"""docs/runbooks/manual-recovery.md for PostgreSQL and MySQL/MariaDB, executed as written against real servers.

Backstop takes a backup of a real database (into moto running as an HTTP server); the live database
is then damaged (the incident). From then on nothing imports Backstop: the runbook's common ```bash
blocks plus exactly one server section run in ONE `bash -euo pipefail` process with only the `aws`
CLI and the server's own client tools. The recovered database is compared table by table, row by
row, with the database at backup time, and the damaged one must have been kept. A corrupted artifact
must stop the runbook at `sha256sum -c`, before any database is created.
"""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from psycopg import sql

from backstop.config import Config
from backstop.manifest import Manifest
from local.emulator import flip_byte
from tests.e2e import test_manual_recovery as manual
from tests.e2e.test_manual_recovery import (
    ENGINE_TAGS,
    PREFIX,
    SECOND,
    Recovery,
    runbook_blocks,
    take_backup,
)

pytestmark = pytest.mark.xdist_group("emulator")

recovery = manual.recovery  # the same fixture: a fresh emulator and bucket per test

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
MY = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}

# Strings a dump and a reload must carry unchanged.
HOSTILE = ["O'Brien", 'say "hi"', "Zoë ✓ ünïcødé 😀", "back\\slash", "semi;colon),(x", "new\nline\ttab", ""]


def test_each_server_section_is_selected_alone_with_the_common_steps() -> None:
    common = [b.code for b in runbook_blocks("sqlite") if not any(t in b.heading for t in ENGINE_TAGS.values())]
    postgres_code = "\n".join(b.code for b in runbook_blocks("postgres"))
    mysql_code = "\n".join(b.code for b in runbook_blocks("mysql"))

    for code in (postgres_code, mysql_code):
        assert all(block in code for block in common)
        assert "sha256sum -c" in code and "PRAGMA" not in code and "tar -xpf" not in code
        assert "jq" not in re.findall(r"\w+", code)
    for needle in ("pg_restore --list", "createdb", "pg_restore --exit-on-error", "--no-owner", "RENAME TO"):
        assert needle in postgres_code and needle not in mysql_code
    for needle in ('tail -n 1 "$RAW"', "-- Dump completed", "CREATE DATABASE", "RENAME TABLE"):
        assert needle in mysql_code and needle not in postgres_code


# --- PostgreSQL ----------------------------------------------------------------------------------------------------

PG_SCHEMA = """
CREATE SCHEMA billing;
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, profile jsonb, note text);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id integer NOT NULL REFERENCES customers(id),
    amount numeric(12, 2) NOT NULL,
    tags text[],
    note text
);
CREATE TABLE billing."Invoices" (id integer PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders(id), body json);
CREATE VIEW big_orders AS SELECT id, amount FROM orders WHERE amount > 100;
"""


def pg_connect(dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dbname=dbname, autocommit=True, **PG)  # type: ignore[arg-type]


def pg_databases(prefix: str) -> list[str]:
    with pg_connect("postgres") as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (prefix,))
        return [str(name) for (name,) in rows.fetchall()]


def pg_content(dbname: str) -> dict[str, Any]:
    """Every table's rows in primary-key order, the sequence position and the views (the logical content)."""
    with pg_connect(dbname) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
        ).fetchall()
        content: dict[str, Any] = {
            f"{schema}.{name}": conn.execute(
                sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(schema, name))
            ).fetchall()
            for schema, name in tables
        }
        content["sequence"] = conn.execute("SELECT last_value FROM orders_id_seq").fetchone()
        content["views"] = conn.execute(
            "SELECT viewname, definition FROM pg_views WHERE schemaname = 'public'"
        ).fetchall()
        return content


@dataclass(frozen=True)
class ServerBackup:
    live: str
    manifest: Manifest
    at_backup: dict[str, Any]
    damaged: dict[str, Any]


@pytest.fixture
def pg_backup(recovery: Recovery, make_config: Callable[..., Config]) -> Iterator[ServerBackup]:
    """A live PostgreSQL database backed up by Backstop, then damaged; every database made is dropped."""
    live = f"bs_rcv_{uuid.uuid4().hex[:10]}"
    try:
        with pg_connect("postgres") as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(live)))
        with pg_connect(live) as conn:
            conn.execute(PG_SCHEMA)
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO customers VALUES (%s, %s, %s::jsonb, %s)",
                    [
                        (
                            i,
                            f"{HOSTILE[i % len(HOSTILE)]} {i}",
                            f'{{"tier": {i % 3}, "nick": "{i}\\"q"}}',
                            HOSTILE[i % 7],
                        )
                        for i in range(1, 61)
                    ],
                )
            conn.execute(
                "INSERT INTO orders (customer_id, amount, tags, note) SELECT 1 + i % 60, (i % 500) / 2.0, "
                "ARRAY['a', 'b''' || i], 'order ' || i || ' ' || repeat('é', i % 5) FROM generate_series(1, 3000) i"
            )
            conn.execute(
                """INSERT INTO billing."Invoices"
                   SELECT i, i * 7, json_build_object('lines', json_build_array(i, 'x"y'))
                   FROM generate_series(1, 200) i"""
            )
            conn.execute("ANALYZE")  # orders (3000 rows) is above exact_count_limit: its count is an estimate
        entry = {"name": "pgshop", "engine": "postgres", "dbname": live, "exact_count_limit": 1000, **PG}
        manifest = take_backup(recovery, make_config(entry, bucket=recovery.bucket, prefix=PREFIX), "pgshop", SECOND)
        at_backup = pg_content(live)
        with pg_connect(live) as conn:  # the incident
            conn.execute('DELETE FROM billing."Invoices" WHERE id > 20')
            conn.execute("UPDATE customers SET note = 'overwritten by a bad deploy'")
        yield ServerBackup(live, manifest, at_backup, pg_content(live))
    finally:
        with pg_connect("postgres") as conn:
            for name in pg_databases(live):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def pg_env() -> dict[str, str]:
    return {"PGHOST": str(PG["host"]), "PGPORT": str(PG["port"]), "PGUSER": str(PG["user"])}


def test_runbook_restores_a_postgres_backup_into_a_new_database_that_takes_the_live_name(
    recovery: Recovery, pg_backup: ServerBackup, tmp_path: Path
) -> None:
    manifest = pg_backup.manifest
    assert manifest.object.key.endswith(".pgdump.zst")
    assert manifest.tables["public.orders"].exact is False
    assert manifest.tables["billing.Invoices"].exact is True
    app = pg_connect(pg_backup.live)  # the application, still connected to the live database

    run = recovery.run_runbook("postgres", db="pgshop", work=tmp_path / "work", **pg_env())

    assert run.returncode == 0, run.explain()
    assert f"chosen: {manifest.backup_id}" in run.stdout
    assert f"TOC entries: manifest {manifest.source['toc_entries']}, archive {manifest.source['toc_entries']}" in (
        run.stdout
    )
    assert re.search(r"public\.orders\t~\d+\t3000\testimate, ok", run.stdout), run.explain()
    assert "billing.Invoices\t200\t200\tok" in run.stdout
    assert f"restored {manifest.backup_id} into {pg_backup.live}" in run.stdout
    assert pg_content(pg_backup.live) == pg_backup.at_backup
    [kept] = [name for name in pg_databases(pg_backup.live) if name != pg_backup.live]
    assert kept.startswith(f"{pg_backup.live}_pre_recovery_")
    assert pg_content(kept) == pg_backup.damaged
    with pytest.raises(psycopg.OperationalError):  # its session was terminated for the rename
        app.execute("SELECT 1")
    app.close()


def test_runbook_stops_at_sha256sum_on_a_corrupt_postgres_artifact_before_creating_a_database(
    recovery: Recovery, pg_backup: ServerBackup, tmp_path: Path
) -> None:
    stored = pg_backup.manifest.object
    flip_byte(recovery.bucket, stored.key, stored.version_id, offset=stored.size // 2)

    run = recovery.run_runbook("postgres", db="pgshop", work=tmp_path / "work", **pg_env())

    assert run.returncode != 0, run.explain()
    assert run.failed_command is not None and run.failed_command.startswith("sha256sum -c"), run.explain()
    assert "FAILED" in run.stdout
    assert run.blocks_started[-1].startswith("4."), run.explain()
    assert pg_databases(pg_backup.live) == [pg_backup.live]
    assert pg_content(pg_backup.live) == pg_backup.damaged


# --- MySQL / MariaDB -----------------------------------------------------------------------------------------------


def my_connect(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(database=database, autocommit=True, charset="utf8mb4", **MY)  # type: ignore[arg-type]


def my_execute(database: str | None, *statements: str) -> None:
    with my_connect(database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def my_databases(prefix: str) -> list[str]:
    with my_connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA ORDER BY 1")
        return [str(name) for (name,) in cur.fetchall() if str(name).startswith(prefix)]


def my_content(database: str) -> dict[str, Any]:
    """Every base table's rows in primary-key order, and what the view returns."""
    with my_connect(database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
        )
        content: dict[str, Any] = {}
        for (table,) in cur.fetchall():
            cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
            content[str(table)] = cur.fetchall()
        cur.execute("SELECT COUNT(*), SUM(amount_cents) FROM big_orders")
        content["view big_orders"] = cur.fetchall()
        return content


@pytest.fixture
def my_backup(recovery: Recovery, make_config: Callable[..., Config]) -> Iterator[ServerBackup]:
    """A live MariaDB database backed up by Backstop, then damaged; every database made is dropped."""
    live = f"bs_rcv_{uuid.uuid4().hex[:10]}"
    try:
        my_execute(
            None,
            f"CREATE DATABASE `{live}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci",
        )
        my_execute(
            live,
            "CREATE TABLE customers (id INT PRIMARY KEY, name VARCHAR(100) NOT NULL, prefs JSON, note TEXT) "
            "ENGINE=InnoDB",
            "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL,"
            " amount_cents INT NOT NULL, note TEXT, payload VARBINARY(32),"
            " CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB",
            "CREATE VIEW big_orders AS SELECT id, amount_cents FROM orders WHERE amount_cents > 1000",
        )
        with my_connect(live) as conn, conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO customers VALUES (%s, %s, %s, %s)",
                [
                    (i, f"{HOSTILE[i % len(HOSTILE)]} {i}", f'{{"tier": {i % 3}, "nick": "{i}\\"q"}}', HOSTILE[i % 7])
                    for i in range(1, 61)
                ],
            )
            cur.executemany(
                "INSERT INTO orders (customer_id, amount_cents, note, payload) VALUES (%s, %s, %s, %s)",
                [(1 + i % 60, i, f"order {i} {HOSTILE[i % 7]}", bytes([i % 256, 0, 39, 92])) for i in range(1, 2001)],
            )
        entry = {"name": "myshop", "engine": "mysql", "dbname": live, **MY}
        entry.pop("password")
        manifest = take_backup(recovery, make_config(entry, bucket=recovery.bucket, prefix=PREFIX), "myshop", SECOND)
        at_backup = my_content(live)
        my_execute(live, "DELETE FROM orders WHERE id > 100", "UPDATE customers SET note = 'overwritten'")
        yield ServerBackup(live, manifest, at_backup, my_content(live))
    finally:
        for name in my_databases(live):
            my_execute(None, f"DROP DATABASE IF EXISTS `{name}`")


def my_option_file(tmp_path: Path) -> Path:
    cnf = tmp_path / "recovery.cnf"
    cnf.write_text(f"[client]\nhost={MY['host']}\nport={MY['port']}\nuser={MY['user']}\npassword={MY['password']}\n")
    cnf.chmod(0o600)
    return cnf


def test_runbook_loads_a_mysql_backup_into_a_new_database_and_its_switch_over_statement_works(
    recovery: Recovery, my_backup: ServerBackup, tmp_path: Path
) -> None:
    manifest = my_backup.manifest
    assert manifest.object.key.endswith(".sql.zst")
    cnf = my_option_file(tmp_path)
    work = tmp_path / "work"

    run = recovery.run_runbook("mysql", db="myshop", work=work, MYSQL_CNF=str(cnf))

    assert run.returncode == 0, run.explain()
    assert f"chosen: {manifest.backup_id}" in run.stdout
    assert "last line: -- Dump completed" in run.stdout
    assert "orders\t2000\torders\t2000" in run.stdout
    [new] = [name for name in my_databases(my_backup.live) if name != my_backup.live]
    assert new.startswith(f"{my_backup.live}_recovered_")
    assert my_content(new) == my_backup.at_backup
    assert my_content(my_backup.live) == my_backup.damaged  # untouched until the operator switches over

    # Way B of 10.4, as the runbook's sh block runs it: the statement the last block wrote.
    switch_sql = work / f"{manifest.backup_id}.switch-over.sql"
    with switch_sql.open("rb") as statement:
        subprocess.run(
            ["mariadb", f"--defaults-extra-file={cnf}", f"--database={my_backup.live}"], stdin=statement, check=True
        )

    assert my_content(my_backup.live) == my_backup.at_backup
    [kept] = [name for name in my_databases(my_backup.live) if name.startswith(f"{my_backup.live}_pre_recovery_")]
    with my_connect(kept) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM orders")
        assert cur.fetchone() == (100,)
        cur.execute("SELECT DISTINCT note FROM customers")
        assert cur.fetchall() == (("overwritten",),)


def test_runbook_stops_at_sha256sum_on_a_corrupt_mysql_artifact_before_creating_a_database(
    recovery: Recovery, my_backup: ServerBackup, tmp_path: Path
) -> None:
    stored = my_backup.manifest.object
    flip_byte(recovery.bucket, stored.key, stored.version_id, offset=stored.size // 2)

    run = recovery.run_runbook("mysql", db="myshop", work=tmp_path / "work", MYSQL_CNF=str(my_option_file(tmp_path)))

    assert run.returncode != 0, run.explain()
    assert run.failed_command is not None and run.failed_command.startswith("sha256sum -c"), run.explain()
    assert "FAILED" in run.stdout
    assert run.blocks_started[-1].startswith("4."), run.explain()
    assert my_databases(my_backup.live) == [my_backup.live]
    assert my_content(my_backup.live) == my_backup.damaged
