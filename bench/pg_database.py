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


def size_bytes(server: Server) -> int:
    with server.connect(DBNAME) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    return int(str(row[0])) if row else 0


def describe(server: Server, scale: int) -> str:
    """Size, tables and rows of the benchmark database, for the report."""
    with server.connect(DBNAME) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid) "
            "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY c.relname"
        ).fetchall()
        version = conn.execute("SHOW server_version").fetchone()
    tables = sum(int(str(r[2])) for r in rows)
    indexes = sum(int(str(r[3])) for r in rows)
    counts = ", ".join(f"{r[0]} {int(str(r[1])):,}" for r in rows)
    server_version = str(version[0]).split()[0] if version else "unknown"
    return (
        f"`pgbench -i -s {scale}`: {size_bytes(server) / MIB:.0f} MiB (tables {tables / MIB:.0f} MiB, "
        f"indexes {indexes / MIB:.0f} MiB); rows: {counts}; PostgreSQL {server_version} on {server.host}:{server.port}"
    )
