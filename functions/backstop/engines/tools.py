"""The database client tools Backstop runs, as found on PATH, with the versions they report.

The engines find their tools the same way (``shutil.which``, MariaDB's names before MySQL's), and
each backup's manifest records the one that made it (``tools``). This lists all of them at once,
for ``backstop --version``: what this machine, or the runner image, carries.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from backstop.engines.mysql import DUMP_TOOLS
from backstop.engines.mysql_restore import CLIENT_TOOLS

TOOLS: tuple[tuple[str, ...], ...] = (("pg_dump",), ("pg_restore",), ("psql",), DUMP_TOOLS, CLIENT_TOOLS)
"""Each tool, as the names it may go by in the order the engines try them."""


def client_tool_versions() -> dict[str, str | None]:
    """What each tool's ``--version`` prints (its first line), under the first of its names on PATH.

    A tool that is not installed appears under its preferred name with ``None``; one that is there
    but prints nothing (or cannot be run) as ``"unknown"``.
    """
    found: dict[str, str | None] = {}
    for names in TOOLS:
        path, name = next(((p, n) for n in names if (p := shutil.which(n)) is not None), (None, names[0]))
        found[name] = None if path is None else _version_of(path)
    return found


def _version_of(path: str) -> str:
    try:
        result = subprocess.run(
            [path, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={"PATH": os.environ.get("PATH", "")},  # nothing else: no password, no connection settings
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    lines = result.stdout.decode(errors="replace").strip().splitlines()
    return " ".join(lines[0].split()) if lines else "unknown"


def version_report(package_version: str, python_version: str) -> str:
    """``backstop --version``: the package and its Python, then a line per tool (``psql: psql (PostgreSQL) 17.6``)."""
    lines = [f"backstop {package_version} (Python {python_version})"]
    for name, version in client_tool_versions().items():
        lines.append(f"{name}: {version if version is not None else 'not on PATH'}")
    return "\n".join(lines)
