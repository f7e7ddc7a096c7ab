"""The PostgreSQL restore part of `make bench`: Backstop's restore against ``pg_restore`` from a local file.

One Backstop backup of the pgbench database (bench/pg_database.py) is taken into the moto server
(untimed), and its archive is downloaded once, decompressed and checked, as the local file of the
reference. Then two pipelines, each its own process under ``/usr/bin/time``, interleaved:

- ``backstop``: ``backstop --config X restore backstop_bench_pg-db latest --to postgresql://.../TARGET
  --yes``: the download of the stored (compressed) bytes and their SHA-256, the plan (current row
  counts of the target), a fresh database, then one stream: zstd decompression and the SHA-256 of
  both sides, fed to ``pg_restore`` into the fresh database and to ``pg_restore --list`` and a
  full read; exact row counts and validation queries, the swap by renames. The target exists
  before every run (a previous restore), so every run swaps and keeps the old one;
- ``pg_restore``: ``pg_restore --format=custom --dbname=REFERENCE FILE`` alone, the same archive
  from a local uncompressed file, into an empty database created just before (untimed).

The target is Backstop at most 1.2x the time of ``pg_restore``. Before each run the databases the
previous run left (the kept ``_pre_restore_`` copy, the reference database) are dropped, a
``CHECKPOINT`` and ``sync`` write the previous run's pages back, so no run pays for another. As many
more Backstop restores under bench/pg_restore_phases.py give the timeline of its stages (medians).

Run by bench.run (``--only postgres-restore`` for this part alone).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import subprocess
import sys
from dataclasses import asdict, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg import sql

from bench import pg_database, postgres
from bench.machine import load_average
from bench.pipelines import Measurement, PipelineError, backstop_argv, timed
from bench.report import (
    MACHINE_FACTS,
    PG_RESTORE_BEGIN,
    PG_RESTORE_END,
    PgRestoreResults,
    publish,
    render_postgres_restore,
)
from bench.s3 import MotoServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_BIN = Path(sys.executable).parent
DATABASE = postgres.DATABASE
# The restore target (it exists before every timed run) and the reference's fresh database.
TARGET = "backstop_bench_pg_restored"
REFERENCE = "backstop_bench_pg_reference"
PIPELINES = ("backstop", "pg_restore")
# Distinct from the other parts' times, so no part shares a backup id with another.
FIRST_AT = datetime(2025, 1, 1, tzinfo=UTC)  # in the past: backups dated ahead are refused
REQUIRED_TOOLS = ("/usr/bin/time", "pg_dump", "pg_restore", "pgbench")


def _execute(server: pg_database.Server, statement: sql.Composable) -> None:
    with server.connect("postgres") as conn:
        conn.execute(statement)


def _drop(server: pg_database.Server, dbname: str) -> None:
    _execute(server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))


def _derived(server: pg_database.Server, prefix: str) -> list[str]:
    """Databases whose names start with ``prefix`` (the restores' ``_restore_`` and ``_pre_restore_`` ones)."""
    with server.connect("postgres") as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)).fetchall()
    return sorted(str(r[0]) for r in rows)


def drop_all(server: pg_database.Server) -> None:
    """Every database this part creates: the target, its kept copies, the reference."""
    for dbname in [TARGET, REFERENCE, *_derived(server, f"{TARGET}_")]:
        _drop(server, dbname)


class PgRestoreBench:
    """Runs the restore pipelines; the bucket holds the one backup every Backstop run restores."""

    def __init__(self, s3: MotoServer, config: Path, work: Path, server: pg_database.Server, size_mib: int) -> None:
        self.s3 = s3
        self.config = config
        self.work = work
        self.server = server
        self.size_mib = size_mib
        self.reference_file = work / "reference.pgdump"
        self.env = s3.env()
        self.env["PATH"] = f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("PGPASSWORD", None)
        self._count = itertools.count()

    def _at(self) -> str:
        return (FIRST_AT + timedelta(hours=next(self._count))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _url(self, dbname: str) -> str:
        return f"postgresql://{self.server.user}@{self.server.host}:{self.server.port}/{dbname}"

    def backstop_argv(self) -> list[str]:
        return [
            str(VENV_BIN / "backstop"),
            "--config",
            str(self.config),
            "restore",
            DATABASE,
            "latest",
            "--to",
            self._url(TARGET),
            "--yes",
        ]

    def reference_argv(self) -> list[str]:
        return ["pg_restore", "--format=custom", f"--dbname={self._url(REFERENCE)}", str(self.reference_file)]

    def setup(self) -> int:
        """The one backup (untimed) and the reference's local file; returns the stored artifact's size."""
        drop_all(self.server)
        self.s3.empty_bucket()
        argv = backstop_argv(VENV_BIN, self.config, DATABASE, self._at())
        timed("backup (setup)", self.size_mib, argv, self.env, ROOT)
        stored = self.s3.largest_object()
        download = [
            str(VENV_BIN / "backstop"),
            "--config",
            str(self.config),
            "download",
            DATABASE,
            "latest",
            "--out",
            str(self.reference_file),
            "--decompress",
        ]
        timed("download (setup)", self.size_mib, download, self.env, ROOT)
        return stored

    def warm(self) -> None:
        """One untimed run of each: the target exists from then on, and every tool has started once."""
        for pipeline in PIPELINES:
            self.run(pipeline, label=f"warm-up {pipeline}")

    def _prepare(self, pipeline: str) -> float:
        for dbname in _derived(self.server, f"{TARGET}_"):
            _drop(self.server, dbname)
        _drop(self.server, REFERENCE)
        if pipeline == "pg_restore":
            _execute(self.server, sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(REFERENCE)))
        _execute(self.server, sql.SQL("CHECKPOINT"))
        os.sync()
        return self.s3.cpu_seconds()

    def run(self, pipeline: str, label: str | None = None) -> Measurement:
        server_cpu = self._prepare(pipeline)
        argv = self.backstop_argv() if pipeline == "backstop" else self.reference_argv()
        measurement, _ = timed(label or pipeline, self.size_mib, argv, self.env, ROOT)
        measurement = replace(
            measurement,
            server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2),
            stored_bytes=self.reference_file.stat().st_size,
        )
        _print_run(measurement)
        return measurement

    def phases(self, count: int) -> list[dict[str, Any]]:
        """``count`` more Backstop restores under bench.pg_restore_phases, each with a timeline of its stages."""
        timelines = []
        for number in range(count):
            server_cpu = self._prepare("backstop")
            output = OUT / f"pg-restore-phases-{number + 1}.json"
            argv = [sys.executable, "-m", "bench.pg_restore_phases", str(output), *self.backstop_argv()[1:]]
            measurement, _ = timed("backstop (instrumented)", self.size_mib, argv, self.env, ROOT)
            _print_run(replace(measurement, server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2)))
            timelines.append(json.loads(output.read_text()))
        return timelines


def _print_run(m: Measurement) -> None:
    print(
        f"  {m.pipeline:<24} {m.size_mib:>5} MiB  wall {m.wall_s:7.2f} s  cpu {m.cpu_s:7.2f} s  "
        f"S3 server cpu {m.server_cpu_s:6.2f} s  peak RSS {m.peak_rss_mib:6.0f} MiB",
        flush=True,
    )


def _order(rep: int) -> tuple[str, ...]:
    return PIPELINES[rep % 2 :] + PIPELINES[: rep % 2]


def run(args: argparse.Namespace, s3: MotoServer, machine: dict[str, str]) -> int:
    """The PostgreSQL restore part; 0 on success, 1 if a pipeline failed, 2 if a tool is missing."""
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            print(f"bench: {tool} is required for the PostgreSQL restore part but not installed", file=sys.stderr)
            return 2
    scale: int = args.pg_scale or (postgres.QUICK_SCALE if args.quick else postgres.DEFAULT_SCALE)
    if scale < 1:
        print("bench: --pg-scale must be positive", file=sys.stderr)
        return 2
    server = pg_database.Server()
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "work-pg-restore"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    pg_database.ensure(server, scale)
    size_mib = round(pg_database.size_bytes(server) / pg_database.MIB)
    runs_n: int = args.runs
    print(
        f"bench: PostgreSQL restore of {pg_database.DBNAME} (pgbench scale {scale}, {size_mib} MiB), {runs_n} "
        f"interleaved run{'s' if runs_n != 1 else ''} of {', '.join(PIPELINES)}"
    )
    config = postgres.write_config(work, server)
    runs: list[Measurement] = []
    phases: list[dict[str, Any]] = []
    load_start = load_average()
    try:
        bench = PgRestoreBench(s3, config, work, server, size_mib)
        stored = bench.setup()
        print(f"bench: moto S3 server pid {s3.pid} on {s3.endpoint}; warm-up, then interleaved runs:")
        bench.warm()
        for rep in range(runs_n):
            runs += [bench.run(pipeline) for pipeline in _order(rep)]
        if not args.no_phases:
            print(f"bench: instrumented Backstop run{'s' if runs_n != 1 else ''}:")
            phases = bench.phases(runs_n)
        restored = pg_database.describe_database(server, TARGET)
        archive_mib = bench.reference_file.stat().st_size / pg_database.MIB
    except (PipelineError, subprocess.SubprocessError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        drop_all(server)
        s3.empty_bucket()
        shutil.rmtree(work, ignore_errors=True)
    settings = {
        "label": f"pgbench scale {scale} ({size_mib} MiB), {runs_n} run{'s' if runs_n != 1 else ''} of each pipeline"
        + (", --quick" if args.quick else ""),
        "database": pg_database.describe(server, scale),
        "restored database": restored,
        "archive": f"{archive_mib:.1f} MiB uncompressed custom format (`pg_dump -Fc -Z0`, what Backstop stores "
        f"before zstd); {stored / pg_database.MIB:.1f} MiB stored in S3",
        "runs": str(runs_n),
        "PostgreSQL tools": postgres.tool_versions(),
        "PostgreSQL server settings": pg_database.settings(server),
        "S3 endpoint": f"moto {machine.get('moto', '')} server on loopback, separate process",
        "load average at start of this part (1/5/15 min)": load_start,
        "load average at end (1/5/15 min)": load_average(),
    }
    machine_facts = {k: v for k, v in machine.items() if k in MACHINE_FACTS}
    results = PgRestoreResults(settings=settings, machine=machine_facts, runs=runs, phases=phases)
    if args.quick:
        results.notes.append("`--quick` run: a small database and one repetition, to check the harness only.")
    data = {"settings": settings, "machine": machine_facts, "runs": [asdict(m) for m in runs], "phases": phases}
    return publish(
        args.output, render_postgres_restore(results), PG_RESTORE_BEGIN, PG_RESTORE_END, OUT, "results-pg-restore", data
    )
