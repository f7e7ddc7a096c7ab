"""Where a Backstop PostgreSQL backup spends its time: the real ``backstop backup``, with timers.

Run as ``python -m bench.pg_phases CONFIG DATABASE AT OUTPUT.json`` (bench.postgres does it). Like
bench.phases, it wraps the stages of the backup path with timers without changing Backstop, and
samples the CPU time of this process's threads; it also samples the CPU time of the processes
around it: pg_dump and the two pg_restore checks (its children), and the server backend that
serves pg_dump (a ``postgres:`` process whose command line names the benchmark database).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from bench import phases
from bench.pg_database import DBNAME


class ProcessSampler:
    """CPU seconds of this process's PostgreSQL tools (pg_dump, pg_restore) and the benchmark's backends."""

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._ticks: dict[int, tuple[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="process-sampler", daemon=True)
        self._me = os.getpid()

    def _kind(self, pid: int, fields: list[str], comm: str) -> str | None:
        if int(fields[1]) == self._me:
            if comm == "pg_restore":
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"--list" in cmdline:
                    return "pg_restore --list"
                if b"--dbname" in cmdline:
                    return "pg_restore into the fresh database"
                return "pg_restore --file=/dev/null"
            return comm
        if comm == "postgres":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if cmdline.startswith(b"postgres:") and DBNAME.encode() in cmdline:
                return "postgres server backends"
        return None

    def _sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                text = (entry / "stat").read_text()
                comm = text[text.index("(") + 1 : text.rindex(")")]
                fields = text.rsplit(")", 1)[1].split()
                kind = self._kind(pid, fields, comm)
            except (OSError, ValueError):  # the process ended meanwhile
                continue
            if kind is not None:
                self._ticks[pid] = (kind, int(fields[11]) + int(fields[12]))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        ticks = os.sysconf("SC_CLK_TCK")
        by_kind: dict[str, float] = {}
        for kind, used in self._ticks.values():
            by_kind[kind] = round(by_kind.get(kind, 0.0) + used / ticks, 2)
        return by_kind


def instrument() -> None:
    """Wrap the stages of the PostgreSQL backup path."""
    import backstop.engines.postgres as postgres
    import backstop.pipeline as pipeline
    import backstop.services.backup as backup
    from backstop.adapters.s3_store import MultipartUpload, S3Store
    from backstop.services.backup import BackupService

    phases._record("imports", 0.0)
    wrap = phases._wrap
    wrap(BackupService, "run", "backup (service)")
    wrap(postgres, "tool_version", "pg_dump --version")
    wrap(postgres.PostgresEngine, "_connect", "connect")
    wrap(postgres.PostgresEngine, "_identity", "server identity")
    wrap(postgres._RestoreCheck, "__init__", "start the two pg_restore checks")
    wrap(postgres._DumpReader, "read", "read pg_dump stdout + tee (all)")
    wrap(postgres._RestoreCheck, "feed", "tee: write to the two pg_restore pipes")
    wrap(postgres.PostgresSnapshot, "finish_dump", "wait for pg_dump exit")
    wrap(postgres, "count_rows", "row counts (in the snapshot)")
    wrap(postgres._RestoreCheck, "result", "wait for pg_restore exits")
    wrap(postgres.PostgresSnapshot, "inspect", "inspect: row counts + pg_restore verdict")
    wrap(backup, "compress_stream", "read + hash + compress + hand to upload")
    wrap(MultipartUpload, "_submit", "writer: hash part + wait for an upload slot")
    wrap(MultipartUpload, "_upload_part", "upload_part")
    wrap(MultipartUpload, "complete", "complete upload + HEAD verify")
    wrap(S3Store, "put_manifest", "manifest")
    original = pipeline._compressor

    def compressor(algorithm: pipeline.Algorithm, level: int) -> phases._TimedCompressor:
        return phases._TimedCompressor(original(algorithm, level))

    pipeline._compressor = compressor


def main(argv: list[str]) -> int:
    config, database, at, output = argv
    sampler = phases._CpuSampler()
    processes = ProcessSampler()
    sampler.start()
    processes.start()
    instrument()
    code = phases.run_backup_command(config, database, at)
    cpu_by_thread = sampler.stop()
    cpu_by_process = processes.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    Path(output).write_text(
        json.dumps(
            {
                "exit": code,
                "wall_s": round(phases._now(), 3),
                "cpu_user_s": usage.ru_utime,
                "cpu_system_s": usage.ru_stime,
                "children_cpu_s": round(children.ru_utime + children.ru_stime, 2),
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "cpu_by_thread_s": cpu_by_thread,
                "cpu_by_process_s": cpu_by_process,
                "spans": [asdict(s) for s in phases._spans],
            },
            indent=1,
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
