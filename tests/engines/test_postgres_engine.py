"""The PostgreSQL engine against the real server: round trips, consistency under writes, and every dump fault."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from backstop.adapters.s3_store import S3Store
from backstop.engines import postgres
from backstop.errors import IntegrityError, SourceError
from backstop.manifest import Manifest
from backstop.services.artifacts import fetch_artifact
from backstop.services.verify import VerifyService
from tests.services import at, failure_records, leftovers, open_uploads, replace_artifact, run_backup, stored_bytes

pytestmark = pytest.mark.xdist_group("postgres")

HOST, PORT, ADMIN = "127.0.0.1", 5432, "postgres"
NAME = "pg"
BACKUP_ID = "pg-20261121T020000Z"


def admin() -> psycopg.Connection[Any]:
    return psycopg.connect(host=HOST, port=PORT, user=ADMIN, dbname="postgres", autocommit=True)


def connect(dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=HOST, port=PORT, user=ADMIN, dbname=dbname, autocommit=True)


@pytest.fixture
def new_database() -> Iterator[Callable[[], str]]:
    """Create uniquely named empty databases; every one is dropped afterwards."""
    made: list[str] = []

    def create() -> str:
        name = f"backstop_test_{uuid.uuid4().hex[:12]}"
        with admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return name

    yield create
    with admin() as conn:
        for name in made:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


SHOP_SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_numbers START 1000;
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    mood mood NOT NULL DEFAULT 'ok',
    profile jsonb,
    raw json
);
CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers(id),
    invoice bigint NOT NULL DEFAULT nextval('invoice_numbers'),
    amount_cents integer NOT NULL CHECK (amount_cents >= 0),
    note text
);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX customers_profile ON customers USING gin (profile);
CREATE FUNCTION order_total(c bigint) RETURNS bigint LANGUAGE sql STABLE
    AS $$ SELECT coalesce(sum(amount_cents), 0) FROM orders WHERE customer_id = c $$;
CREATE VIEW customer_totals AS SELECT id, name, order_total(id) AS total FROM customers;
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed ""Case"" Table" (id int PRIMARY KEY, v text);
INSERT INTO "Odd Schema"."Mixed ""Case"" Table" VALUES (1, 'one'), (2, 'two');
CREATE TABLE schema_migrations (version text PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('20260101000000'), ('20260315120000');
"""


def create_shop(dbname: str, orders: int) -> None:
    with connect(dbname) as conn:
        conn.execute(SHOP_SCHEMA)
        conn.execute(
            """
            INSERT INTO customers (name, mood, profile, raw)
            SELECT 'customer ' || i, (ARRAY['sad','ok','happy'])[1 + i % 3]::mood,
                   jsonb_build_object('tier', i % 5, 'tags', jsonb_build_array('a', i)), json_build_object('i', i)
            FROM generate_series(1, 1000) AS i
            """
        )
        conn.execute(
            """
            INSERT INTO orders (customer_id, amount_cents, note)
            SELECT 1 + i %% 1000, i %% 10000, 'order ' || i || repeat('x', i %% 40) FROM generate_series(1, %s) AS i
            """,
            (orders,),
        )
        conn.execute("SELECT setval('invoice_numbers', 424242)")


def postgres_entry(dbname: str, **extra: Any) -> dict[str, Any]:
    return {"name": NAME, "engine": "postgres", "host": HOST, "port": PORT, "dbname": dbname, "user": ADMIN, **extra}


def table_checksums(dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and a checksum of every table's rows in a fixed order (the logical content)."""
    result: dict[str, tuple[int, str]] = {}
    with connect(dbname) as conn:
        tables = conn.execute(
            "SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            query = sql.SQL(
                "SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '')) FROM {} AS t"
            )
            row = conn.execute(query.format(sql.Identifier(schema, table))).fetchone()
            assert row is not None
            result[f"{schema}.{table}"] = (int(row[0]), str(row[1]))
    return result


def schema_of(dbname: str) -> str:
    text = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "-h", HOST, "-p", str(PORT), "-U", ADMIN, "-d", dbname],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # \restrict and \unrestrict carry a random key per run; comments name the dump's own database
    lines = [
        line for line in text.splitlines() if line.strip() and not line.startswith(("--", "\\restrict", "\\unrestrict"))
    ]
    return "\n".join(lines)


def restore_into(raw: Path, dbname: str) -> None:
    """Restore an archive with the real pg_restore CLI, stopping at the first error."""
    subprocess.run(
        ["pg_restore", "--exit-on-error", "--no-owner", "-h", HOST, "-p", str(PORT), "-U", ADMIN, "-d", dbname, raw],
        capture_output=True,
        check=True,
    )


def download(store: S3Store, manifest: Manifest, tmp_path: Path) -> Path:
    raw = tmp_path / "downloaded.pgdump"
    fetch_artifact(store, manifest, raw)
    return raw


def assert_nothing_committed(store: S3Store, s3: Any, work_dir: Path) -> None:
    assert not store.manifest_exists(BACKUP_ID)
    assert store.newest_backup_id(NAME) is None
    assert open_uploads(s3) == []
    assert leftovers(work_dir) == []


# -- round trip ------------------------------------------------------------------------------------


def test_a_database_round_trips_through_pg_restore_with_equal_schema_data_and_counts(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store, tmp_path: Path, work_dir: Path
) -> None:
    # given a realistic database: enum, sequence, json/jsonb, indexes, foreign keys, a function, a view
    source = new_database()
    create_shop(source, orders=300_000)
    config = make_config(postgres_entry(source))

    # when it is backed up, downloaded with the standard path and restored with the real pg_restore
    manifest = run_backup(config, store, at(21), database=NAME).manifest
    target = new_database()
    restore_into(download(store, manifest, tmp_path), target)

    # then the restored database equals the source logically, and the manifest's counts are the data's
    assert schema_of(target) == schema_of(source)
    restored = table_checksums(target)
    assert restored == table_checksums(source)
    assert {name: stat.rows for name, stat in manifest.tables.items()} == {n: c for n, (c, _) in restored.items()}
    assert manifest.tables["public.orders"].rows == 300_000
    assert manifest.tables['Odd Schema.Mixed "Case" Table'].rows == 2
    with connect(target) as conn:
        assert conn.execute("SELECT last_value FROM invoice_numbers").fetchone() == (424242,)
    # and the manifest says who the server is and how the archive was made
    assert manifest.engine == "postgres"
    assert manifest.object.key.endswith(".pgdump.zst")
    assert manifest.source["dbname"] == source
    assert manifest.source["server_version_num"] == 150020 or int(str(manifest.source["server_version_num"])) > 0
    assert manifest.source["system_identifier"]
    assert manifest.source["dump_format"] == "custom, uncompressed (zstd by backstop)"
    assert manifest.tools["pg_dump"].startswith("15")
    assert manifest.integrity.passed and manifest.integrity.check == "pg_restore"
    assert manifest.schema_version == "schema_migrations:20260315120000"
    assert leftovers(work_dir) == []


def test_tables_above_the_exact_count_limit_are_recorded_as_estimates(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store
) -> None:
    # given an analysed table larger than the configured exact-count limit
    source = new_database()
    create_shop(source, orders=5_000)
    with connect(source) as conn:
        conn.execute("ANALYZE")
    config = make_config(postgres_entry(source, exact_count_limit=2_000))

    # when it is backed up
    manifest = run_backup(config, store, at(21), database=NAME).manifest

    # then the big table carries the planner's estimate, the small ones an exact count
    assert manifest.tables["public.orders"].exact is False
    assert manifest.tables["public.orders"].rows > 0
    assert manifest.tables["public.customers"].exact is True
    assert manifest.tables["public.customers"].rows == 1000


# -- consistency under writes ----------------------------------------------------------------------


def test_transfers_during_the_dump_keep_the_total_in_the_restored_data(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store, tmp_path: Path
) -> None:
    # given accounts holding a constant total, and a writer moving money between them while the backup runs
    source = new_database()
    with connect(source) as conn:
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, balance bigint NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT i, 1000 FROM generate_series(1, 20000) AS i")
        conn.execute("CREATE TABLE transfers (id bigserial PRIMARY KEY, src int, dst int, amount int)")
    total = 20000 * 1000
    stop = threading.Event()
    transfers = 0

    def move_money() -> None:
        nonlocal transfers
        with psycopg.connect(host=HOST, port=PORT, user=ADMIN, dbname=source) as conn:
            i = 0
            while not stop.is_set():
                i += 1
                a, b = 1 + (i * 7919) % 20000, 1 + (i * 104729) % 20000
                with conn.transaction():
                    conn.execute("UPDATE accounts SET balance = balance - 7 WHERE id = %s", (a,))
                    conn.execute("UPDATE accounts SET balance = balance + 7 WHERE id = %s", (b,))
                    conn.execute("INSERT INTO transfers (src, dst, amount) VALUES (%s, %s, 7)", (a, b))
                transfers += 1

    writer = threading.Thread(target=move_money)
    writer.start()
    try:
        while transfers < 50:
            stop.wait(0.01)
        # when it is backed up under that load
        manifest = run_backup(make_config(postgres_entry(source)), store, at(21), database=NAME).manifest
    finally:
        stop.set()
        writer.join()
    target = new_database()
    restore_into(download(store, manifest, tmp_path), target)

    # then the restored total is intact, and the manifest counted exactly the rows that were dumped
    with connect(target) as conn:
        assert conn.execute("SELECT sum(balance) FROM accounts").fetchone() == (total,)
        restored_transfers = conn.execute("SELECT count(*) FROM transfers").fetchone()
    assert restored_transfers is not None and restored_transfers[0] > 0
    assert manifest.tables["public.transfers"].rows == restored_transfers[0]
    assert manifest.tables["public.accounts"].rows == 20000


# -- refusals and faults ---------------------------------------------------------------------------


def test_a_server_newer_than_pg_dump_is_refused_naming_both_versions(
    new_database: Callable[[], str],
    make_config: Callable[..., Any],
    store: S3Store,
    s3: Any,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a server that reports a major version above the installed pg_dump's
    source = new_database()
    monkeypatch.setattr(postgres, "server_version_num", lambda _conn: 990001)

    # when it is backed up
    with pytest.raises(SourceError) as failure:
        run_backup(make_config(postgres_entry(source)), store, at(21), database=NAME)

    # then the refusal names both versions and nothing was uploaded
    assert "version 99" in str(failure.value)
    assert re.search(r"pg_dump is version 1[0-9]", str(failure.value))
    assert_nothing_committed(store, s3, work_dir)
    assert failure_records(s3, NAME)[0]["error"] == "SourceError"


def fake_pg_dump(bin_dir: Path, after_bytes: int, how: str) -> None:
    """A pg_dump on PATH that runs the real one, passes ``after_bytes`` bytes through, then dies ``how``."""
    real = subprocess.run(["bash", "-c", "command -v pg_dump"], capture_output=True, text=True, check=True)
    bin_dir.mkdir()
    fail = "kill -9 $$" if how == "killed" else "echo 'pg_dump: error: injected failure' >&2; exit 1"
    script = bin_dir / "pg_dump"
    script.write_text(
        f"""#!/bin/bash
case "$1" in --version) exec {real.stdout.strip()} "$@";; esac
{real.stdout.strip()} "$@" | head -c {after_bytes}
{fail}
"""
    )
    script.chmod(0o755)


@pytest.mark.parametrize("how", ["killed", "exit 1"])
def test_a_pg_dump_that_dies_after_writing_bytes_commits_nothing(
    how: str,
    new_database: Callable[[], str],
    make_config: Callable[..., Any],
    store: S3Store,
    s3: Any,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a database of several megabytes and a pg_dump that stops after 2 MB
    source = new_database()
    create_shop(source, orders=60_000)
    fake_pg_dump(tmp_path / "bin", 2_000_000, how)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    # when it is backed up
    with pytest.raises(SourceError) as failure:
        run_backup(make_config(postgres_entry(source)), store, at(21), database=NAME)

    # then the failure names the database and how pg_dump ended, and nothing was committed or left behind
    message = str(failure.value)
    assert f"database {NAME}" in message
    assert ("killed by signal 9" in message) if how == "killed" else ("injected failure" in message)
    assert_nothing_committed(store, s3, work_dir)


def test_a_table_locked_past_lock_wait_timeout_fails_the_backup_clearly(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store, s3: Any, work_dir: Path
) -> None:
    # given another session holding an exclusive lock on a table for the whole backup
    source = new_database()
    create_shop(source, orders=100)
    config = make_config(postgres_entry(source, lock_wait_timeout="1s"))
    with psycopg.connect(host=HOST, port=PORT, user=ADMIN, dbname=source) as holder:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")

        # when it is backed up
        with pytest.raises(SourceError) as failure:
            run_backup(config, store, at(21), database=NAME)
        holder.rollback()

    # then it failed instead of waiting, saying a table was locked, and nothing was committed
    assert "lock" in str(failure.value).lower()
    assert_nothing_committed(store, s3, work_dir)


# -- verify ----------------------------------------------------------------------------------------


def test_a_committed_postgres_backup_verifies(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store
) -> None:
    # given a committed backup
    source = new_database()
    create_shop(source, orders=2_000)
    config = make_config(postgres_entry(source))
    run_backup(config, store, at(21), database=NAME)

    # when it is verified
    report = VerifyService(config, store).verify(NAME)

    # then every check passed, the pg_restore one included
    checks = dict(report.checks)
    assert "TOC entries" in checks["pg_restore"]


def test_a_resealed_manifest_of_a_truncated_archive_fails_the_pg_restore_check(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: S3Store, s3: Any, tmp_path: Path
) -> None:
    # given a committed backup whose artifact was replaced by a truncated archive under a consistent manifest
    source = new_database()
    create_shop(source, orders=20_000)
    config = make_config(postgres_entry(source))
    manifest = run_backup(config, store, at(21), database=NAME).manifest
    raw = download(store, manifest, tmp_path).read_bytes()
    truncated = raw[: len(raw) * 2 // 3]
    import zstandard

    replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(truncated), raw=truncated)
    assert stored_bytes(s3, manifest)  # the original version is still there; the forged manifest pins the new one

    # when it is verified
    with pytest.raises(IntegrityError) as failure:
        VerifyService(config, store).verify(NAME)

    # then the pg_restore check names the failure
    assert "pg_restore" in str(failure.value)
