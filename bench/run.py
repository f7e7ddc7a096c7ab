"""`make bench`: Backstop's full backup against the runbook procedure and the serial floor.

    .venv/bin/python -m bench.run                  # 1 GiB database, 3 interleaved runs, RSS at 100, 1024, 2048 MiB
    .venv/bin/python -m bench.run --quick          # 64 MiB, 1 run: checks the harness in about a minute
    .venv/bin/python -m bench.run --size-mb 2048 --runs 5 --rss-sizes 100,500,1000,2000
    .venv/bin/python -m bench.run --only postgres  # the PostgreSQL backup part alone (--pg-scale, default 68: ~1 GiB)
    .venv/bin/python -m bench.run --only postgres-restore  # the PostgreSQL restore part alone

A second part (bench/postgres.py, after the SQLite part unless ``--only`` picks one) times
Backstop's PostgreSQL backup against ``pg_dump -Fc -f FILE`` alone, on the same moto server; a
third (bench/postgres_restore.py) times Backstop's restore into a server against ``pg_restore``
alone from a local file.

Every pipeline runs as its own process under ``/usr/bin/time`` against one local moto S3 server
(its own process too), on the same generated database, warm in the page cache. Results are
printed, written between the markers of docs/benchmarks.md (or ``--output``), and kept as JSON
under bench/out/. See docs/benchmarks.md for what is measured and why.
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

from bench import postgres, postgres_restore
from bench.generate import MIB, database_path, generate
from bench.machine import describe, load_average
from bench.pipelines import (
    Measurement,
    PipelineError,
    backstop_argv,
    floor_argv,
    runbook_argv,
    timed,
)
from bench.report import BEGIN, END, Results, publish, render
from bench.s3 import BUCKET, MotoServer

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
DOCS = ROOT / "docs" / "benchmarks.md"
# The venv's bin directory (not resolved: .venv/bin/python is a symlink to the system python).
VENV_BIN = Path(sys.executable).parent
PIPELINES = ("backstop", "runbook", "floor")
PARTS = ("sqlite", "postgres", "postgres-restore")
FIRST_AT = datetime(2026, 1, 1, tzinfo=UTC)


def _sizes(text: str) -> list[int]:
    try:
        sizes = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes in MiB") from None
    if not sizes or sizes[0] < 1:
        raise argparse.ArgumentTypeError("sizes must be positive numbers of MiB")
    return sizes


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, help="size of the benchmark database in MiB (default 1024)")
    parser.add_argument("--runs", type=int, help="interleaved runs of each pipeline; medians are reported (default 3)")
    parser.add_argument(
        "--rss-sizes", type=_sizes, help="database sizes in MiB for Backstop's peak RSS (default 100,1024,2048)"
    )
    parser.add_argument("--quick", action="store_true", help="small scale to check the harness: 64 MiB, 1 run")
    parser.add_argument("--no-phases", action="store_true", help="skip the instrumented Backstop runs")
    parser.add_argument(
        "--only",
        choices=PARTS,
        help="run one part of the benchmark (default: all three, in this order)",
    )
    postgres.add_arguments(parser)
    parser.add_argument(
        "--output",
        type=Path,
        help="markdown file whose generated block is replaced "
        "(default docs/benchmarks.md; bench/out/benchmarks-quick.md with --quick)",
    )
    args = parser.parse_args(argv)
    quick = args.quick
    args.size_mb = args.size_mb or (64 if quick else 1024)
    args.runs = args.runs or (1 if quick else 3)
    args.rss_sizes = args.rss_sizes or ([16, 64] if quick else [100, 1024, 2048])
    args.output = args.output or (OUT / "benchmarks-quick.md" if quick else DOCS)
    if args.size_mb < 1 or args.runs < 1:
        parser.error("--size-mb and --runs must be positive")
    return args


def _database_name(size_mib: int) -> str:
    return f"bench-{size_mib}mib"


def _write_config(databases: dict[int, Path], work: Path) -> Path:
    """A backstop.yaml with Backstop's defaults and one database per size."""
    config = OUT / "backstop-bench.yaml"
    data = {
        "bucket": BUCKET,
        "prefix": "bench",
        "work_dir": str(work),
        "databases": [
            {"name": _database_name(size), "engine": "sqlite", "path": str(path)} for size, path in databases.items()
        ],
    }
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def _backstop_settings(config: Path, name: str) -> str:
    """How Backstop compresses and uploads, as its configuration resolves it."""
    from backstop.config import load_config

    loaded = load_config(config)
    db = loaded.database(name)
    return (
        f"defaults: {db.compression} level {db.level}, multipart parts of {loaded.upload.part_size_mb} MiB, "
        f"{loaded.upload.concurrency} concurrent"
    )


def _warm(paths: list[Path], env: dict[str, str]) -> None:
    """Read the databases once and start each tool once, so no pipeline pays a cold cache alone."""
    for path in paths:
        with path.open("rb") as handle:
            while handle.read(8 * MIB):
                pass
    for argv in ([str(VENV_BIN / "backstop"), "--help"], [str(VENV_BIN / "aws"), "--version"], ["sqlite3", "-version"]):
        subprocess.run(argv, env=env, capture_output=True, check=False)


def _describe_database(path: Path) -> str:
    import sqlite3
    from contextlib import closing

    with closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")]
        indexes = conn.execute("SELECT count(*) FROM sqlite_schema WHERE type = 'index'").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return f"{path.stat().st_size / MIB:.0f} MiB, {len(tables)} tables, {indexes} indexes, journal_mode={mode}"


class Bench:
    """Runs pipelines against one moto server, emptying its bucket before every run."""

    def __init__(self, s3: MotoServer, config: Path, work: Path, databases: dict[int, Path]) -> None:
        self.s3 = s3
        self.config = config
        self.work = work
        self.databases = databases
        self.env = s3.env()
        self.env["PATH"] = f"{VENV_BIN}{os.pathsep}{self.env.get('PATH', '')}"
        self._count = itertools.count()

    def _next_at(self) -> str:
        return (FIRST_AT + timedelta(hours=next(self._count))).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _argv(self, pipeline: str, size: int) -> list[str]:
        db = self.databases[size]
        if pipeline == "backstop":
            return backstop_argv(VENV_BIN, self.config, _database_name(size), self._next_at())
        if pipeline == "runbook":
            key = f"runbook/{db.name}.{next(self._count)}.gz"
            return runbook_argv(db, self.work / "runbook-snapshot.sqlite", key, self.s3.endpoint)
        return floor_argv(db, self.work / "floor-snapshot.sqlite")

    def _prepare(self) -> float:
        self.s3.empty_bucket()
        os.sync()  # the previous run's dirty pages are written back before this one starts
        return self.s3.cpu_seconds()

    def run(self, pipeline: str, size: int) -> Measurement:
        server_cpu = self._prepare()
        measurement, _ = timed(pipeline, size, self._argv(pipeline, size), self.env, ROOT)
        measurement = replace(measurement, server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2))
        if pipeline == "backstop":
            measurement = replace(measurement, stored_bytes=self.s3.largest_object())
        _print_run(measurement)
        return measurement

    def phases(self, size: int) -> dict[str, Any]:
        """One Backstop backup under bench.phases: the same command, with a timeline of its stages."""
        server_cpu = self._prepare()
        output = OUT / "phases.json"
        argv = [sys.executable, "-m", "bench.phases", str(self.config), _database_name(size), self._next_at()]
        measurement, _ = timed("backstop (instrumented)", size, [*argv, str(output)], self.env, ROOT)
        _print_run(replace(measurement, server_cpu_s=round(self.s3.cpu_seconds() - server_cpu, 2)))
        data: dict[str, Any] = json.loads(output.read_text())
        return data


def _print_run(m: Measurement) -> None:
    steps = "  ".join(f"{name} {seconds:.2f}" for name, seconds in m.steps.items())
    print(
        f"  {m.pipeline:<24} {m.size_mib:>5} MiB  wall {m.wall_s:7.2f} s  cpu {m.cpu_s:7.2f} s  "
        f"server cpu {m.server_cpu_s:6.2f} s  peak RSS {m.peak_rss_mib:6.0f} MiB  {steps}",
        flush=True,
    )


def _sqlite(args: argparse.Namespace, s3: MotoServer, machine: dict[str, str]) -> int:
    """The SQLite part: Backstop against the runbook and the serial floor."""
    for tool in ("/usr/bin/time", "sqlite3", "zstd", "gzip"):
        if shutil.which(tool) is None:
            print(f"bench: {tool} is required but not installed", file=sys.stderr)
            return 2
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    print(
        f"bench: {args.size_mb} MiB database, {args.runs} interleaved run{'s' if args.runs != 1 else ''} of each "
        f"pipeline, Backstop peak RSS at {', '.join(map(str, args.rss_sizes))} MiB"
    )
    sizes = sorted({args.size_mb, *args.rss_sizes})
    databases = {size: generate(database_path(OUT, size), size) for size in sizes}
    config = _write_config(databases, work)
    runs: list[Measurement] = []
    rss: list[Measurement] = []
    phases: dict[str, Any] | None = None
    try:
        bench = Bench(s3, config, work, databases)
        _warm([databases[args.size_mb]], bench.env)
        print(f"bench: moto S3 server pid {s3.pid} on {s3.endpoint}; interleaved runs:")
        for rep in range(args.runs):
            order = PIPELINES[rep % 3 :] + PIPELINES[: rep % 3]
            runs += [bench.run(pipeline, args.size_mb) for pipeline in order]
        if not args.no_phases:
            print("bench: instrumented Backstop run:")
            phases = bench.phases(args.size_mb)
        print("bench: Backstop peak RSS by database size:")
        for size in args.rss_sizes:
            _warm([databases[size]], bench.env)
            rss.append(bench.run("backstop", size))
        s3.empty_bucket()
        server_peak = s3.peak_rss_mib()
    except PipelineError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    settings = {
        "label": f"{args.size_mb} MiB database, {args.runs} run{'s' if args.runs != 1 else ''} of each pipeline"
        + (", --quick" if args.quick else ""),
        "database": _describe_database(databases[args.size_mb]),
        "runs": str(args.runs),
        "Backstop configuration": _backstop_settings(config, _database_name(args.size_mb)),
        "S3 endpoint": f"moto {machine['moto']} server on loopback, separate process (peak RSS {server_peak:.0f} MiB)",
        "load average at end (1/5/15 min)": load_average(),
    }
    results = Results(settings=settings, machine=machine, runs=runs, rss=rss, phases=phases)
    if args.quick:
        results.notes.append("`--quick` run: a small database and one repetition, to check the harness only.")
    data = {
        "settings": settings,
        "machine": machine,
        "runs": [asdict(m) for m in runs],
        "rss": [asdict(m) for m in rss],
        "phases": phases,
    }
    return publish(args.output, render(results), BEGIN, END, OUT, "results", data)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    machine = describe(OUT, VENV_BIN)
    code = 0
    # One moto server for every part (its own process; each part empties the bucket as it needs).
    parts = {"sqlite": _sqlite, "postgres": postgres.run, "postgres-restore": postgres_restore.run}
    with MotoServer(OUT / "moto.log") as s3:
        for name in PARTS if args.only is None else (args.only,):
            if code != 0:
                break
            if name != PARTS[0] and args.only is None:
                print()
            code = parts[name](args, s3, machine)
    return code


if __name__ == "__main__":
    sys.exit(main())
