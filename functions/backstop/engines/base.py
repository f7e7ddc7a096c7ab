"""What every engine provides to the backup, verify and restore services."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from backstop.errors import IntegrityError
from backstop.manifest import IntegrityCheck, Manifest, TableStat


@dataclass(frozen=True)
class Inspection:
    """The engine check of a snapshot, a downloaded artifact or a restored target, with its statistics."""

    integrity: IntegrityCheck
    tables: dict[str, TableStat] = field(default_factory=dict)
    schema_version: str | None = None
    stats: dict[str, int] = field(default_factory=dict)


def compare_with_manifest(found: Inspection, manifest: Manifest, what: str) -> None:
    """IntegrityError unless the check passed and every table has the manifest's row count."""
    if not found.integrity.passed:
        raise IntegrityError(f"{what} fails {found.integrity.check}: {found.integrity.detail}.")
    expected = {name: stat.rows for name, stat in manifest.tables.items()}
    actual = {name: stat.rows for name, stat in found.tables.items()}
    if expected != actual:
        diffs = [
            f"{name}: {expected.get(name, 'absent')} expected, {actual.get(name, 'absent')} found"
            for name in sorted(set(expected) | set(actual))
            if expected.get(name) != actual.get(name)
        ]
        raise IntegrityError(f"{what} does not match the manifest's row counts ({'; '.join(diffs[:5])}).")


class Snapshot(Protocol):
    """A consistent, point-in-time copy of a source, readable as one raw byte stream."""

    source: dict[str, str | int | None]
    tools: dict[str, str]
    warnings: list[str]
    cpu_bound_check: bool
    """Whether ``inspect`` is CPU work in this process that the commit waits on (SQLite's
    integrity_check): compression then runs at a lower CPU priority so the check finishes first."""

    def open(self) -> AbstractContextManager[BinaryIO]:
        """The raw stream; reading it to EOF succeeds only if the whole snapshot was produced."""
        ...

    def inspect(self) -> Inspection:
        """Integrity check and statistics; safe to run while the stream is being read."""
        ...

    def raw_size(self) -> int | None:
        """Size of the raw stream if known in advance (for the progress bar)."""
        ...


class Engine(Protocol):
    """One kind of source: how to snapshot it, and how to check an artifact of it."""

    name: str
    artifact: str  # extension before the compression one: "sqlite", "tar", "pgdump", "sql"

    def snapshot(self, run_dir: Path) -> AbstractContextManager[Snapshot]:
        """Take a snapshot whose temporary files live in ``run_dir``."""
        ...

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        """Check a decompressed artifact and compare it with the manifest; IntegrityError on any difference."""
        ...


class LocalRestoreEngine(Engine, Protocol):
    """An engine whose artifacts restore into a local path (SQLite files and directories)."""

    def staging_path(self, target: Path, run_dir: Path, stamp: str) -> Path:
        """Where the decompressed artifact is written before the swap (same filesystem as the target if it matters)."""
        ...

    def describe_target(self, target: Path) -> dict[str, int] | None:
        """Row or file counts of the current target for the restore plan; None if it does not exist."""
        ...

    def install(self, raw: Path, target: Path, manifest: Manifest, pre_restore: Path) -> Inspection:
        """Atomically replace ``target`` with the artifact, keeping the old target at ``pre_restore``.

        Validates the result against the manifest and puts the old target back if it does not match;
        the target is never left half-restored.
        """
        ...
