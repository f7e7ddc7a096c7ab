"""The PostgreSQL part of `make bench`: Backstop's backup against ``pg_dump -Fc > file`` alone.

Three pipelines, each its own process under ``/usr/bin/time``, interleaved, on the same pgbench
database (bench/pg_database.py) warm in the page cache:

- ``backstop``: ``backstop --config X backup backstop_bench_pg-db --type manual --at T`` against the
  moto server of the SQLite part (pg_dump ``--compress=0`` in an exported snapshot, teed into two
  ``pg_restore`` checks, zstd, SHA-256 of both sides, multipart upload, HEAD, manifest);
- ``pg_dump``: ``pg_dump -Fc -f FILE`` with its default compression (gzip level 6 inside the
  archive): the target is Backstop at most 1.15x its time;
- ``pg_dump -Z 0``: the same, uncompressed: context only (what the dump alone costs), not a target.

Run by bench.run (``--only postgres`` for this part alone).
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

import yaml

from bench import pg_database
from bench.machine import load_average
from bench.pipelines import Measurement, PipelineError, backstop_argv, timed
from bench.report import MACHINE_FACTS, PG_BEGIN, PG_END, PgResults, publish, render_postgres
from bench.s3 import BUCKET, MotoServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
VENV_BIN = Path(sys.executable).parent
DATABASE = "backstop_bench_pg-db"
PIPELINES = ("backstop", "pg_dump", "pg_dump -Z 0")
DEFAULT_SCALE = 68
QUICK_SCALE = 5
# Distinct from the SQLite part's times, so the two parts never share a backup id.
FIRST_AT = datetime(2024, 1, 1, tzinfo=UTC)  # in the past: backups dated ahead are refused
REQUIRED_TOOLS = ("/usr/bin/time", "pg_dump", "pg_restore", "pgbench")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pg-scale",
        type=int,
        help=f"pgbench scale of the PostgreSQL database (default {DEFAULT_SCALE}, about 1 GiB; "
        f"{QUICK_SCALE} with --quick)",
    )


def write_config(work: Path, server: pg_database.Server) -> Path:
    """The backstop.yaml of both PostgreSQL parts: the benchmark database with Backstop's defaults."""
    config = OUT / "backstop-bench-pg.yaml"
    data = {
        "bucket": BUCKET,
        "prefix": "bench-pg",
        "work_dir": str(work),
        "databases": [
            {
                "name": DATABASE,
                "engine": "postgres",
                "host": server.host,
                "port": server.port,
                "dbname": pg_database.DBNAME,
                "user": server.user,
                # One query as an operator would configure it, so a restore runs the step.
                "validation_queries": ["SELECT count(*) > 0 FROM pgbench_branches"],
            }
        ],
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def tool_versions() -> str:
    """``15.20 (Debian ...)`` for pg_dump, pg_restore and pgbench."""
    versions = []
    for tool in ("pg_dump", "pg_restore", "pgbench"):
        done = subprocess.run([tool, "--version"], capture_output=True, text=True, check=False)
        versions.append(f"{tool} {done.stdout.split('(PostgreSQL)')[-1].strip() or 'unknown'}")
    return ", ".join(versions)


def _backstop_settings(config: Path) -> str:
    """How Backstop compresses and uploads, as its configuration resolves it."""
    from backstop.config import load_config

    loaded = load_config(config)
    db = loaded.database(DATABASE)
    return (
        f"defaults: {db.compression} level {db.level}, multipart parts of {loaded.upload.part_size_mb} MiB, "
        f"{loaded.upload.concurrency} concurrent"
    )


class PgBench:
    """Runs the PostgreSQL pipelines against one moto server, emptying its bucket before every run."""

    def __init__(self, s3: MotoServer, config: Path, work: Path, server: pg_database.Server, size_mib: int) -> None:
        self.s3 = s3
        self.config = config
        self.work = work
        self.server = server
        self.size_mib = size_mib
        self.env = s3.env()
        self.env["PATH"] = f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self.env.pop("PGPASSWORD", None)
        self._count = itertools.count()

    def _next_at(self) -> str:
        return (FIRST_AT + timedelta(hours=next(self._count))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _dump_argv(self, pipeline: str, target: Path) -> list[str]:
        argv = ["pg_dump", *self.server.args(), "-Fc", "-f", str(target)]
        if pipeline == "pg_dump -Z 0":
            argv.append("-Z0")
        return [*argv, pg_database.DBNAME]

    def warm(self) -> None:
        """Read the database once (into the page cache) and start each tool once."""
        target = self.work / "warm.dump"
        timed("warm-up pg_dump -Z 0", self.size_mib, self._dump_argv("pg_dump -Z 0", target), self.env, ROOT)
        target.unlink(missing_ok=True)
        for argv in ([str(VENV_BIN / "backstop"), "--help"], ["pg_restore", "--version"]):
            timed("warm-up", 0, argv, self.env, ROOT)

    def _prepare(self) -> float:
        self.s3.empty_bucket()
        for leftover in self.work.glob("*.dump"):
            leftover.unlink()
        os.sync()
        return self.s3.cpu_seconds()

    def run(self, pipeline: str) -> Measurement:
        server_cpu = self._prepare()
        if pipeline == "backstop":
            argv = backstop_argv(VENV_BIN, self.config, DATABASE, self._next_at())
            measurement, _ = timed(pipeline, self.size_mib, argv, self.env, ROOT)
            stored = self.s3.largest_object()
        else:
            target = self.work / f"{pipeline.replace(' ', '')}.dump"
            measurement, _ = timed(pipeline, self.size_mib, self._dump_argv(pipeline, target), self.env, ROOT)
            stored = target.stat().st_size
            target.unlink()
        measurement = replace(
            measurement, server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2), stored_bytes=stored
        )
        _print_run(measurement)
        return measurement

    def phases(self) -> dict[str, Any]:
        """One Backstop backup under bench.pg_phases: the same command, with a timeline of its stages."""
        server_cpu = self._prepare()
        output = OUT / "pg-phases.json"
        argv = [sys.executable, "-m", "bench.pg_phases", str(self.config), DATABASE, self._next_at(), str(output)]
        measurement, _ = timed("backstop (instrumented)", self.size_mib, argv, self.env, ROOT)
        _print_run(replace(measurement, server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2)))
        data: dict[str, Any] = json.loads(output.read_text())
        return data


def _print_run(m: Measurement) -> None:
    stored = f"  artifact {m.stored_bytes / pg_database.MIB:7.1f} MiB" if m.stored_bytes else ""
    print(
        f"  {m.pipeline:<24} {m.size_mib:>5} MiB  wall {m.wall_s:7.2f} s  cpu {m.cpu_s:7.2f} s  "
        f"server cpu {m.server_cpu_s:6.2f} s  peak RSS {m.peak_rss_mib:6.0f} MiB{stored}",
        flush=True,
    )


def run(args: argparse.Namespace, s3: MotoServer, machine: dict[str, str]) -> int:
    """The PostgreSQL part; 0 on success, 1 if a pipeline failed, 2 if a tool is missing."""
    for tool in REQUIRED_TOOLS:
        if shutil.which(tool) is None:
            print(f"bench: {tool} is required for the PostgreSQL part but not installed", file=sys.stderr)
            return 2
    scale: int = args.pg_scale or (QUICK_SCALE if args.quick else DEFAULT_SCALE)
    if scale < 1:
        print("bench: --pg-scale must be positive", file=sys.stderr)
        return 2
    server = pg_database.Server()
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "work-pg"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    pg_database.ensure(server, scale)
    size_mib = round(pg_database.size_bytes(server) / pg_database.MIB)
    runs_n: int = args.runs
    print(
        f"bench: PostgreSQL {pg_database.DBNAME} (pgbench scale {scale}, {size_mib} MiB), {runs_n} interleaved "
        f"run{'s' if runs_n != 1 else ''} of {', '.join(PIPELINES)}"
    )
    config = write_config(work, server)
    runs: list[Measurement] = []
    phases: dict[str, Any] | None = None
    load_start = load_average()
    try:
        bench = PgBench(s3, config, work, server, size_mib)
        bench.warm()
        print(f"bench: moto S3 server pid {s3.pid} on {s3.endpoint}; interleaved runs:")
        for rep in range(runs_n):
            order = PIPELINES[rep % 3 :] + PIPELINES[: rep % 3]
            runs += [bench.run(pipeline) for pipeline in order]
        if not args.no_phases:
            print("bench: instrumented Backstop run:")
            phases = bench.phases()
        s3.empty_bucket()
        server_peak = s3.peak_rss_mib()
    except PipelineError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = {
        "label": f"pgbench scale {scale} ({size_mib} MiB), {runs_n} run{'s' if runs_n != 1 else ''} of each pipeline"
        + (", --quick" if args.quick else ""),
        "database": pg_database.describe(server, scale),
        "runs": str(runs_n),
        "Backstop configuration": _backstop_settings(config),
        "PostgreSQL tools": tool_versions(),
        "S3 endpoint": f"moto {machine.get('moto', '')} server on loopback, separate process "
        f"(peak RSS so far {server_peak:.0f} MiB)",
        "load average at start of this part (1/5/15 min)": load_start,
        "load average at end (1/5/15 min)": load_average(),
    }
    machine_facts = {k: v for k, v in machine.items() if k in MACHINE_FACTS}
    results = PgResults(settings=settings, machine=machine_facts, runs=runs, phases=phases)
    if args.quick:
        results.notes.append("`--quick` run: a small database and one repetition, to check the harness only.")
    data = {"settings": settings, "machine": machine_facts, "runs": [asdict(m) for m in runs], "phases": phases}
    return publish(args.output, render_postgres(results), PG_BEGIN, PG_END, OUT, "results-pg", data)
