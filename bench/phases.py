"""Where a Backstop backup spends its time: the real ``backstop backup`` command, with timers.

Run as ``python -m bench.phases CONFIG DATABASE AT OUTPUT.json`` (bench.run does it). It wraps the
methods of each stage of the backup path with timers, then calls the CLI exactly as a user would,
and writes a timeline (seconds since the process started, per thread) to OUTPUT.json. Nothing in
Backstop is changed: the wrappers only record when each call started and ended.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


def _process_start() -> float:
    """CLOCK_BOOTTIME seconds at which this process started (from /proc/self/stat)."""
    ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
    return ticks / os.sysconf("SC_CLK_TCK")


_T0 = _process_start()


def _now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME) - _T0


@dataclass(frozen=True)
class Span:
    name: str
    thread: str
    start: float
    end: float


_spans: list[Span] = []
_lock = threading.Lock()


_thread_names: dict[int, str] = {}


def _label(thread_name: str) -> str:
    """A readable name for the threads Backstop starts without naming them for this purpose."""
    if thread_name.startswith("upload_"):
        return "upload threads"
    if thread_name.startswith("check_"):
        return "check thread"
    if thread_name.startswith("compress_"):
        return "compress thread (lower priority)"
    if thread_name == "process-sampler":
        return "process sampler (the benchmark's own)"
    return thread_name


def _record(name: str, start: float) -> None:
    label = _label(threading.current_thread().name)
    span = Span(name, label, round(start, 4), round(_now(), 4))
    with _lock:
        _spans.append(span)
        _thread_names[threading.get_native_id()] = label


class _CpuSampler:
    """Samples the CPU time of every thread of this process, Python's and native ones (zstd workers).

    Threads that end between two samples lose at most one interval of their CPU time.
    """

    def __init__(self, interval: float = 0.05) -> None:
        self._interval = interval
        self._ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cpu-sampler", daemon=True)
        self._sampler_tid = 0

    def _sample(self) -> None:
        for thread in threading.enumerate():  # Python threads by name, even those that record no span
            if thread.native_id is not None and thread.native_id not in _thread_names:
                _thread_names[thread.native_id] = _label(thread.name)
        for task in Path("/proc/self/task").iterdir():
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the thread ended meanwhile
                continue
            self._ticks[int(task.name)] = int(fields[11]) + int(fields[12])

    def _loop(self) -> None:
        self._sampler_tid = threading.get_native_id()
        while not self._stop.wait(self._interval):
            self._sample()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> dict[str, float]:
        """CPU seconds by thread name; native threads Backstop did not name are grouped together."""
        self._stop.set()
        self._thread.join()
        self._sample()
        ticks = os.sysconf("SC_CLK_TCK")
        main = threading.main_thread().native_id
        by_name: dict[str, float] = {}
        for tid, used in self._ticks.items():
            if tid == self._sampler_tid:
                continue
            name = "MainThread" if tid == main else _thread_names.get(tid, "native threads (zstd workers)")
            by_name[name] = round(by_name.get(name, 0.0) + used / ticks, 2)
        return by_name


def _wrap(owner: Any, attribute: str, name: str) -> None:
    original: Callable[..., Any] = getattr(owner, attribute)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = _now()
        try:
            return original(*args, **kwargs)
        finally:
            _record(name, start)

    setattr(owner, attribute, timed)


class _TimedCompressor:
    """The compressor Backstop uses, with the time spent inside compress() and flush() recorded."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def compress(self, data: bytes) -> bytes:
        start = _now()
        try:
            return bytes(self._inner.compress(data))
        finally:
            _record("compressor.compress", start)

    def flush(self) -> bytes:
        start = _now()
        try:
            return bytes(self._inner.flush())
        finally:
            _record("compressor.flush", start)


def instrument() -> None:
    """Wrap the stages of the backup path (imported here so import time shows in the timeline)."""
    import backstop.pipeline as pipeline
    import backstop.services.backup as backup
    from backstop.adapters.s3_store import MultipartUpload, S3Store
    from backstop.engines.sqlite import SqliteSnapshot
    from backstop.services.backup import BackupService

    _record("imports", 0.0)
    _wrap(BackupService, "run", "backup (service)")
    _wrap(SqliteSnapshot, "take", "snapshot (backup API)")
    _wrap(SqliteSnapshot, "inspect", "integrity_check + row counts")
    _wrap(backup, "compress_stream", "read + hash + compress + hand to upload")
    _wrap(MultipartUpload, "_submit", "writer: hash part + wait for an upload slot")
    _wrap(MultipartUpload, "_upload_part", "upload_part")
    _wrap(MultipartUpload, "complete", "complete upload + HEAD verify")
    _wrap(S3Store, "put_manifest", "manifest")
    original = pipeline._compressor

    def compressor(algorithm: Any, level: int) -> Any:
        return _TimedCompressor(original(algorithm, level))

    pipeline._compressor = compressor


def run_backup_command(config: str, database: str, at: str) -> int:
    """`backstop backup` in this (instrumented) process; its exit status."""
    from backstop.cli import main as cli

    try:
        cli(["--config", config, "backup", database, "--type", "manual", "--at", at], standalone_mode=False)
    except SystemExit as exc:  # the CLI exits 1 on a failed backup
        return int(exc.code or 0)
    return 0


def main(argv: list[str]) -> int:
    config, database, at, output = argv
    sampler = _CpuSampler()
    sampler.start()
    instrument()
    code = run_backup_command(config, database, at)
    cpu_by_thread = sampler.stop()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    Path(output).write_text(
        json.dumps(
            {
                "exit": code,
                "wall_s": round(_now(), 3),
                "cpu_user_s": usage.ru_utime,
                "cpu_system_s": usage.ru_stime,
                "peak_rss_mib": usage.ru_maxrss / 1024,
                "cpu_by_thread_s": cpu_by_thread,
                "spans": [asdict(s) for s in _spans],
            },
            indent=1,
        )
    )
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
