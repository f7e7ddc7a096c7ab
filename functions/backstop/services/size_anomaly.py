"""The size anomaly check: a committed backup far smaller or larger than the recent ones of its database.

A dump that silently lost most of its tables, a source replaced by an empty file, or a runaway
table all commit as valid backups; only their size gives them away. The new backup is compared
with the median raw (what the engine produced) and stored (what S3 holds) sizes of the last
``HISTORY`` committed backups of the same database, engine and compression; reading them costs a
bounded number of requests (``recent_backup_ids`` plus one GET per manifest), never a full listing.
The anomaly is for a human: the backup itself is valid data and stays committed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Literal

from backstop.manifest import Manifest
from backstop.ports import Backups

HISTORY = 7  # previous backups read
MIN_HISTORY = 3  # comparable previous backups needed for the ratio rules
SHRINK_FACTOR = 0.5  # below this fraction of the median: shrunk
GROWTH_FACTOR = 2.0  # above this multiple of the median: grew
# With fewer than MIN_HISTORY comparable backups, only a collapse is flagged: a backup smaller than
# this fraction of every previous one (an emptied database after real ones).
COLLAPSE_FACTOR = 0.1
CHECKED_TYPES = frozenset({"scheduled", "manual"})

Kind = Literal["shrunk", "grew", "near-empty"]
Measure = Literal["raw", "stored"]


@dataclass(frozen=True)
class SizeAnomaly:
    """How one backup's size departs from its recent history."""

    backup_id: str
    database: str
    kind: Kind
    measure: Measure
    size: int
    reference: int  # the median (shrunk, grew) or the smallest previous size (near-empty)
    compared_with: int

    @property
    def ratio(self) -> float:
        return self.size / self.reference if self.reference else float("inf")

    def sentence(self) -> str:
        """One sentence for the log, the alert and the backup's outcome."""
        if self.kind == "near-empty":
            found = (
                f"Backup {self.backup_id} is near-empty: {_size(self.size)} {self.measure}, against at least "
                f"{_size(self.reference)} for each of the previous {self.compared_with} backups of {self.database}"
            )
        else:
            found = (
                f"Backup {self.backup_id} is {self.ratio:.2f}x the median {self.measure} size of the previous "
                f"{self.compared_with} backups of {self.database} ({_size(self.size)} against "
                f"{_size(self.reference)})"
            )
        check = "what made the source grow" if self.kind == "grew" else "that the source still holds all its data"
        return f"{found}; it was committed, but check {check}."

    def alert(self) -> dict[str, object]:
        """The body of the ``backup_size_anomaly`` alert."""
        return {
            "event": "backup_size_anomaly",
            "database": self.database,
            "backup_id": self.backup_id,
            "kind": self.kind,
            "measure": self.measure,
            "size_bytes": self.size,
            "reference_bytes": self.reference,
            "ratio": round(self.ratio, 4) if self.reference else None,
            "compared_with": self.compared_with,
            "message": self.sentence(),
        }


def check_size(store: Backups, manifest: Manifest) -> SizeAnomaly | None:
    """The anomaly of the committed ``manifest`` against its database's recent backups, or None.

    Reads nothing for the types that are not checked; StorageError or ManifestError when the
    history cannot be read.
    """
    if manifest.type not in CHECKED_TYPES:
        return None
    ids = store.recent_backup_ids(manifest.database, manifest.backup_id, HISTORY)
    return size_anomaly(manifest, [store.get_manifest(backup_id) for backup_id in ids])


def size_anomaly(manifest: Manifest, previous: list[Manifest]) -> SizeAnomaly | None:
    """The anomaly of ``manifest`` against ``previous`` (its database's recent backups), or None.

    Only scheduled and manual backups are checked, against scheduled and manual backups of the same
    engine and compression (a changed algorithm changes every stored size).
    """
    if manifest.type not in CHECKED_TYPES:
        return None
    comparable = [
        m
        for m in previous
        if m.type in CHECKED_TYPES and m.engine == manifest.engine and m.compression == manifest.compression
    ]
    if not comparable:
        return None
    measures: tuple[tuple[Measure, int, list[int]], ...] = (
        ("raw", manifest.raw.size, [m.raw.size for m in comparable]),
        ("stored", manifest.object.size, [m.object.size for m in comparable]),
    )
    for measure, size, history in measures:
        found = _departure(size, history)
        if found is not None:
            kind, reference = found
            return SizeAnomaly(manifest.backup_id, manifest.database, kind, measure, size, reference, len(comparable))
    return None


def _departure(size: int, history: list[int]) -> tuple[Kind, int] | None:
    smallest = min(history)
    if smallest > 0 and size < COLLAPSE_FACTOR * smallest:
        return "near-empty", smallest
    if len(history) < MIN_HISTORY:
        return None
    median = int(statistics.median(history))
    if size < SHRINK_FACTOR * median:
        return "shrunk", median
    if size > GROWTH_FACTOR * median:
        return "grew", median
    return None


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
