"""Where a Backstop PostgreSQL restore spends its time: the real ``backstop restore``, with timers.

Run as ``python -m bench.pg_restore_phases OUTPUT.json BACKSTOP-ARGS...`` (bench.postgres_restore
does it, with the arguments of its timed Backstop runs). Like bench.pg_phases, it wraps the stages
of the restore path with timers without changing Backstop, samples the CPU time of this process's
threads, and of the processes around it: the ``pg_restore`` children (the two checks and the
restore) and the server backends that serve them.
"""

from __future__ import annotations

import json
import resource
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bench import phases
from bench.pg_phases import ProcessSampler

FETCH = "fetch: resolve + download the stored bytes + SHA-256"
CONNECT = "connect (maintenance)"
DESCRIBE = "plan: target row counts"
SESSIONS = "plan: sessions on the target"
CREATE = "create the fresh database"
LOAD = "load: one stream into pg_restore and its checks"
# Within the load (in the timeline, not in the phases: they overlap it).
STREAM = "load: decompress + SHA-256 of both sides, fed to the three pg_restore"
VERDICT = "load: wait for pg_restore --list + full read"
FINISH = "load: wait for pg_restore after the end of the stream"
VALIDATE = "validate: row counts + validation queries"
SWAP = "swap by renames"
CLEANUP = "remove the run directory"

# The phase of the report that stands for the reference's work: Backstop's own pg_restore, fed as it streams.
LOAD_PHASE = "load: `pg_restore` fed the decompressed stream (its checks alongside)"
# The stages of a restore in the order they run, and the phase of the report each belongs to.
STAGES = (
    (FETCH, "resolve the manifest and download the stored bytes"),
    (CONNECT, "plan"),
    (DESCRIBE, "plan"),
    (SESSIONS, "plan"),
    (CREATE, "create the fresh database"),
    (LOAD, LOAD_PHASE),
    (VALIDATE, "validate"),
    (SWAP, "swap"),
    (CLEANUP, "remove the run directory"),
)


def instrument() -> None:
    """Wrap the stages of the restore path into a server."""
    import backstop.engines.postgres as postgres
    import backstop.services.server_restore as server_restore
    from backstop.services.server_restore import ServerRestoreService

    phases._record("imports", 0.0)
    wrap = phases._wrap
    wrap(ServerRestoreService, "restore", "restore (service)")
    wrap(server_restore, "download", FETCH)
    wrap(postgres.PostgresServer, "describe", DESCRIBE)
    wrap(postgres.PostgresServer, "sessions", SESSIONS)
    wrap(postgres.PostgresServer, "create_fresh", CREATE)
    wrap(server_restore._PostgresTarget, "load", LOAD)
    wrap(server_restore, "_unpack", STREAM)
    wrap(postgres.PostgresServer, "validate", VALIDATE)
    wrap(postgres.PostgresServer, "swap", SWAP)
    wrap(shutil, "rmtree", CLEANUP)
    _time_the_exit(postgres.PostgresEngine, "artifact_check", VERDICT)
    _time_the_exit(postgres.PostgresServer, "pg_restore", FINISH)
    original = postgres.restore_server

    @contextmanager
    def restore_server(*args: Any, **kwargs: Any) -> Iterator[Any]:
        start = phases._now()
        with original(*args, **kwargs) as server:
            phases._record(CONNECT, start)
            yield server

    postgres.restore_server = restore_server  # type: ignore[assignment]  # the same call, timed (imported when used)


def _time_the_exit(owner: Any, attribute: str, name: str) -> None:
    """Record how long leaving the context manager ``owner.attribute(...)`` takes once its block ends cleanly."""
    entered = getattr(owner, attribute)

    @contextmanager
    def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
        manager = entered(*args, **kwargs)
        value = manager.__enter__()
        try:
            yield value
        except BaseException as exc:
            if not manager.__exit__(type(exc), exc, exc.__traceback__):
                raise
        else:
            start = phases._now()
            manager.__exit__(None, None, None)
            phases._record(name, start)

    setattr(owner, attribute, timed)


def run_restore_command(args: list[str]) -> int:
    """`backstop ARGS` (a restore) in this (instrumented) process; its exit status."""
    from backstop.cli import main as cli

    try:
        cli(args, standalone_mode=False)
    except SystemExit as exc:  # the CLI exits 1 on a failed restore
        return int(exc.code or 0)
    return 0


def main(argv: list[str]) -> int:
    output, *args = argv
    sampler = phases._CpuSampler()
    processes = ProcessSampler()
    sampler.start()
    processes.start()
    instrument()
    code = run_restore_command(args)
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
