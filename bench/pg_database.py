"""The PostgreSQL benchmark database: ``pgbench -i -s SCALE``, created once and reused.

The database ``backstop_bench_pg`` on the local server (127.0.0.1:5432, user postgres, trust) is
built by ``pgbench -i`` and ``VACUUM ANALYZE``; only then is a comment recording its scale set on
it, so a database whose initialisation was interrupted (no comment, or another scale) is dropped
and built again. Scale 68 is about 1 GiB on disk (tables and indexes); scale 1 is 100,000 accounts.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

DBNAME = "backstop_bench_pg"
HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Server:
    host: str = HOST
    port: int = PORT
    user: str = USER

    def connect(self, dbname: str) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname=dbname, autocommit=True, connect_timeout=10
        )

    def args(self) -> list[str]:
        """Connection options of the PostgreSQL command-line tools."""
        return ["-h", self.host, "-p", str(self.port), "-U", self.user]


def _marker(scale: int) -> str:
    return f"backstop bench: pgbench -i -s {scale}, vacuum analyze"


def _current_marker(server: Server) -> str | None:
    """The comment on the benchmark database, '' if it has none, None if it does not exist."""
    with server.connect("postgres") as conn:
        row = conn.execute(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = %s",
            (DBNAME,),
        ).fetchone()
    return None if row is None else str(row[0])


def ensure(server: Server, scale: int) -> bool:
    """Make sure ``backstop_bench_pg`` holds pgbench data of ``scale``; True if it was (re)built."""
    if _current_marker(server) == _marker(scale):
        return False
    started = time.monotonic()
    print(f"bench: building {DBNAME} with pgbench -i -s {scale} (about {scale * 15} MiB) ...", flush=True)
    with server.connect("postgres") as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DBNAME)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DBNAME)))
    done = subprocess.run(
        ["pgbench", *server.args(), "-i", "-q", "-s", str(scale), DBNAME],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"pgbench -i exited with {done.returncode}: {done.stderr.strip()[-2000:]}")
    with server.connect(DBNAME) as conn:
        conn.execute("VACUUM ANALYZE")
    with server.connect("postgres") as conn:
        conn.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(DBNAME), sql.Literal(_marker(scale)))
        )
    print(f"bench: built {DBNAME} in {time.monotonic() - started:.0f} s", flush=True)
    return True


def size_bytes(server: Server, dbname: str = DBNAME) -> int:
    with server.connect(dbname) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(str(row[0])) if row else 0


def describe_database(server: Server, dbname: str = DBNAME) -> str:
    """Size, tables, indexes and rows (the planner's counts) of ``dbname``, for the report."""
    with server.connect(dbname) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
        ).fetchall()
    tables = sum(int(str(r[2])) for r in rows)
    indexes = sum(int(str(r[3])) for r in rows)
    counts = ", ".join(f"{r[0]} {_planner_rows(int(str(r[1])))}" for r in rows)
    return (
        f"{size_bytes(server, dbname) / MIB:.0f} MiB (tables {tables / MIB:.0f} MiB, indexes {indexes / MIB:.0f} MiB); "
        f"rows: {counts}"
    )


def _planner_rows(reltuples: int) -> str:
    """The planner's row count, or what -1 means (a table never vacuumed nor analysed)."""
    return f"{reltuples:,}" if reltuples >= 0 else "not analysed"


def describe(server: Server, scale: int) -> str:
    """The benchmark database and its server, for the report."""
    with server.connect(DBNAME) as conn:
        version = conn.execute("SHOW server_version").fetchone()
    server_version = str(version[0]).split()[0] if version else "unknown"
    return (
        f"`pgbench -i -s {scale}`: {describe_database(server)}; PostgreSQL {server_version} on "
        f"{server.host}:{server.port}"
    )


# The server settings that move a restore's time (WAL volume, checkpoints, index builds).
RESTORE_SETTINGS = (
    "shared_buffers",
    "maintenance_work_mem",
    "max_wal_size",
    "wal_level",
    "fsync",
    "synchronous_commit",
    "full_page_writes",
    "wal_compression",
    "max_parallel_maintenance_workers",
)


def settings(server: Server) -> str:
    """``name=value`` of RESTORE_SETTINGS as the server runs them (with units)."""
    with server.connect("postgres") as conn:
        rows = conn.execute(
            "SELECT name, setting, coalesce(unit, '') FROM pg_settings WHERE name = ANY(%s) ORDER BY name",
            (list(RESTORE_SETTINGS),),
        ).fetchall()
    return ", ".join(f"{name}={_with_unit(str(value), str(unit))}" for name, value, unit in rows)


def _with_unit(value: str, unit: str) -> str:
    """``16384`` with unit ``8kB`` as ``128MB``; other values as they are."""
    factors = {"8kB": 8 * 1024, "kB": 1024, "MB": MIB}
    if unit in factors and value.isdigit():
        size = int(value) * factors[unit]
        return f"{size // MIB}MB" if size % MIB == 0 else f"{size // 1024}kB"
    return value + unit
