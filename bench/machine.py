"""What the benchmark ran on: CPU, memory, disk, tool versions, and how busy the machine was."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def _first_line(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unavailable ({exc})"
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else "unknown"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _disk(path: Path) -> str:
    """Device, filesystem, size and whether it is rotational, for the filesystem holding ``path``."""
    try:
        done = subprocess.run(
            ["df", "-h", "--output=source,fstype,size", str(path)], capture_output=True, text=True, check=False
        )
    except OSError as exc:
        return f"unavailable ({exc})"
    fields = done.stdout.split()
    if len(fields) < 6:
        return "unknown"
    source, fstype, size = fields[-3:]
    rotational = Path("/sys/block") / Path(source).name / "queue" / "rotational"
    kind = ""
    if rotational.exists():
        kind = f", queue/rotational={rotational.read_text().strip()}"
    return f"{source} ({fstype}, {size}{kind})"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def describe(work: Path, venv_bin: Path) -> dict[str, str]:
    """Facts about the machine and the tools, as label -> value."""
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{_cpu_model()}, {_first_line(['nproc'])} cores (nproc)",
        "memory": _memory_gib(),
        "disk": _disk(work),
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start (1/5/15 min)": load_average(),
        "python": sys.version.split()[0],
        "backstop": _version("backstop"),
        "zstandard (python)": _version("zstandard"),
        "sqlite (python module)": sqlite3.sqlite_version,
        "sqlite3 CLI": _first_line(["sqlite3", "--version"]).split()[0],
        "zstd CLI": _first_line(["zstd", "--version"]).strip("* "),
        "gzip": _first_line(["gzip", "--version"]),
        "aws CLI": _first_line([str(venv_bin / "aws"), "--version"]),
        "moto": _version("moto"),
    }
