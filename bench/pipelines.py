"""The three pipelines under comparison, each run as its own process under ``/usr/bin/time``.

- ``backstop``: ``backstop --config X backup DB --type manual --at T`` (snapshot through the online
  backup API, integrity check, zstd, SHA-256, multipart upload, HEAD verification, manifest).
- ``runbook``: the procedure of common runbooks, one tool after the other: ``sqlite3 .backup``,
  ``PRAGMA integrity_check``, ``gzip -6``, ``aws s3 cp``, ``aws s3api head-object``.
- ``floor``: the same local steps with ``zstd -1`` and no upload at all, one after the other: the
  serial floor, which Backstop can only beat (while also uploading) by overlapping the work.

The shell pipelines print a timestamp after each step on stderr, so the report can show where
their time goes; the timestamps cost nothing measurable.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from bench.s3 import BUCKET

TIME = "/usr/bin/time"
# wall seconds, peak RSS (KiB, of the largest process in the tree), user and system CPU seconds
TIME_FORMAT = "%e %M %U %S"

_MARK = 'mark() { printf "mark %s %s\\n" "$1" "$EPOCHREALTIME" >&2; }\n'

RUNBOOK = (
    "set -euo pipefail\n"
    "db=$1 snap=$2 bucket=$3 key=$4 endpoint=$5\n" + _MARK + "mark start\n"
    'sqlite3 "$db" ".backup \'$snap\'"\n'
    "mark snapshot\n"
    'result=$(sqlite3 "$snap" "PRAGMA integrity_check")\n'
    '[ "$result" = ok ] || { echo "integrity_check: $result" >&2; exit 1; }\n'
    "mark integrity_check\n"
    'gzip -6 -c "$snap" > "$snap.gz"\n'
    "mark compress\n"
    'printf "size %s\\n" "$(stat -c %s "$snap.gz")" >&2\n'
    'aws s3 cp "$snap.gz" "s3://$bucket/$key" --endpoint-url "$endpoint" --only-show-errors\n'
    "mark upload\n"
    'aws s3api head-object --bucket "$bucket" --key "$key" --endpoint-url "$endpoint" > /dev/null\n'
    "mark verify\n"
    'rm -f "$snap" "$snap.gz"\n'
    "mark cleanup\n"
)

FLOOR = (
    "set -euo pipefail\n"
    "db=$1 snap=$2\n" + _MARK + "mark start\n"
    'sqlite3 "$db" ".backup \'$snap\'"\n'
    "mark snapshot\n"
    'result=$(sqlite3 "$snap" "PRAGMA integrity_check")\n'
    '[ "$result" = ok ] || { echo "integrity_check: $result" >&2; exit 1; }\n'
    "mark integrity_check\n"
    'zstd -1 -q -c "$snap" > "$snap.zst"\n'
    "mark compress\n"
    'printf "size %s\\n" "$(stat -c %s "$snap.zst")" >&2\n'
    'rm -f "$snap" "$snap.zst"\n'
    "mark cleanup\n"
)


@dataclass(frozen=True)
class Measurement:
    """One run of one pipeline."""

    pipeline: str
    size_mib: int
    wall_s: float
    peak_rss_mib: float
    user_s: float
    system_s: float
    steps: dict[str, float] = field(default_factory=dict)
    server_cpu_s: float = 0.0
    stored_bytes: int = 0

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s


class PipelineError(RuntimeError):
    """A pipeline exited non-zero: its numbers mean nothing."""


def _steps(stderr: str) -> dict[str, float]:
    """Durations between the ``mark NAME EPOCH`` lines a shell pipeline printed."""
    marks = [(parts[1], float(parts[2])) for line in stderr.splitlines() if (parts := line.split())[:1] == ["mark"]]
    return {name: round(t - marks[i][1], 3) for i, (name, t) in enumerate(marks[1:])}


def _artifact_size(stderr: str) -> int:
    """The ``size N`` line a shell pipeline printed for its compressed file (0 if none)."""
    sizes = [int(parts[1]) for line in stderr.splitlines() if (parts := line.split())[:1] == ["size"]]
    return sizes[-1] if sizes else 0


def timed(
    pipeline: str, size_mib: int, argv: list[str], env: dict[str, str], cwd: Path
) -> tuple[Measurement, subprocess.CompletedProcess[str]]:
    """Run ``argv`` under ``/usr/bin/time``; PipelineError with its stderr if it fails."""
    with tempfile.NamedTemporaryFile("r", prefix="bench-time-", suffix=".txt") as report:
        done = subprocess.run(
            [TIME, "-f", TIME_FORMAT, "-o", report.name, *argv],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise PipelineError(f"{pipeline} exited with {done.returncode}:\n{done.stderr[-4000:]}")
        # /usr/bin/time may prefix a line such as "Command exited with non-zero status"; ours is last.
        wall, rss_kib, user, system = report.read().strip().splitlines()[-1].split()
    measurement = Measurement(
        pipeline=pipeline,
        size_mib=size_mib,
        wall_s=float(wall),
        peak_rss_mib=int(rss_kib) / 1024,
        user_s=float(user),
        system_s=float(system),
        steps=_steps(done.stderr),
        stored_bytes=_artifact_size(done.stderr),
    )
    return measurement, done


def backstop_argv(venv_bin: Path, config: Path, database: str, at: str) -> list[str]:
    return [str(venv_bin / "backstop"), "--config", str(config), "backup", database, "--type", "manual", "--at", at]


def runbook_argv(db: Path, snapshot: Path, key: str, endpoint: str) -> list[str]:
    return ["bash", "-c", RUNBOOK, "runbook", str(db), str(snapshot), BUCKET, key, endpoint]


def floor_argv(db: Path, snapshot: Path) -> list[str]:
    return ["bash", "-c", FLOOR, "floor", str(db), str(snapshot)]
