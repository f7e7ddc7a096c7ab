"""Keep-last-good: the newest good backups of each database outlive any outage.

Lifecycle expires backups by age alone: if backups stop for longer than a tier's retention, the last
good ones would be deleted on schedule. Each lifecycle rule matches a database's prefix AND the tag
``backstop:tier=<tier>``; the guard takes the newest ``retention.keep_last`` committed, good backups
of each database out of every rule by tagging their artifact and manifest ``held-<tier>``, which no
rule matches, and gives an older one its own tier back once newer good backups have taken its place,
so lifecycle then ages it out as usual (at once if it is already past its tier's age).

"Good" means committed (a manifest, written last), not dated in the future, and not found corrupt,
unreadable or overwritten by the latest verification sweep. Only the tier tag changes, and only
between ``<tier>`` and ``held-<tier>``: the role that runs the guard may do nothing else to a backup
(``infra.backup_vault.BackupVault.grant_guard``), so a compromised guard can keep backups longer,
never shorter.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

from backstop.config import Config, Retention
from backstop.deadline import NO_DEADLINE, Deadline
from backstop.errors import DeadlineExceededError
from backstop.manifest import Manifest
from backstop.ports import BackupStore, Clock, NoNotifier, Notifier
from backstop.retention import TIER_TAG, held
from backstop.services.artifacts import is_future_dated

log = logging.getLogger(__name__)


@dataclass
class GuardReport:
    """What one run of the guard did: per database, the backups it holds, and the tags it changed."""

    held: dict[str, list[str]] = field(default_factory=dict)
    newly_held: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    timed_out: str | None = None
    """Why the guard stopped at its deadline before reaching every database (those are absent from ``held``)."""

    def as_dict(self) -> dict[str, object]:
        return {
            "held": self.held,
            "newly_held": self.newly_held,
            "released": self.released,
            "timed_out": self.timed_out,
        }


class RetentionGuard:
    """Holds the newest ``keep_last`` good backups of each database in ``retention`` (name -> its retention)."""

    def __init__(
        self,
        retention: Mapping[str, Retention],
        store: BackupStore,
        clock: Clock | None = None,
        *,
        notifier: Notifier | None = None,
        deadline: Deadline = NO_DEADLINE,
    ) -> None:
        """``deadline``: when a run in a function must stop, a margin before the function's timeout; ``notifier``
        gets the one alert of a run stopped there."""
        self._retention = dict(retention)
        self._store = store
        self._clock = clock or (lambda: datetime.now(UTC))
        self._notifier = notifier or NoNotifier()
        self._deadline = deadline

    @classmethod
    def of(cls, config: Config, store: BackupStore, clock: Clock | None = None) -> Self:
        """The guard of every database in ``config``."""
        return cls({db.name: db.retention for db in config.databases}, store, clock)

    def run(self) -> GuardReport:
        """Hold each database's newest good backups and release the ones they replace, database by database.

        Past the deadline it stops before the next database (what it did so far stands: each change is
        one tag), says so in ``timed_out`` and publishes one ``guard_timed_out`` alert.
        """
        report = GuardReport()
        for name, retention in self._retention.items():
            try:
                self._deadline.check("The keep-last-good guard")
            except DeadlineExceededError as exc:
                report.timed_out = str(exc)
                self._alert_timed_out(report, [n for n in self._retention if n not in report.held])
                break
            manifests = self._store.manifests(name)
            keep = self._newest_good(manifests, retention.keep_last)
            report.held[name] = sorted(m.backup_id for m in keep)
            kept = {m.backup_id for m in keep}
            for manifest in manifests:
                changed = self._tag(manifest, hold=manifest.backup_id in kept)
                if changed == "held":
                    report.newly_held.append(manifest.backup_id)
                elif changed == "released":
                    report.released.append(manifest.backup_id)
        return report

    def _alert_timed_out(self, report: GuardReport, unreached: list[str]) -> None:
        log.error("%s", report.timed_out)
        self._notifier.publish(
            "Backstop: the keep-last-good guard stopped at its deadline",
            {
                "event": "guard_timed_out",
                "done": sorted(report.held),
                "not_reached": unreached,
                "message": report.timed_out,
            },
        )

    def _newest_good(self, manifests: list[Manifest], count: int) -> list[Manifest]:
        now = self._clock()
        good = [m for m in manifests if not is_future_dated(m.scheduled_for, now) and self._not_condemned(m)]
        return sorted(good, key=lambda m: m.backup_id, reverse=True)[:count]

    def _not_condemned(self, manifest: Manifest) -> bool:
        swept = self._store.get_sidecar(manifest.backup_id, "sweep")
        return swept is None or swept.get("passed") is not False

    def _tag(self, manifest: Manifest, *, hold: bool) -> str | None:
        """Set the tier tag of the backup's artifact and manifest versions; "held"/"released" if it changed."""
        want = held(manifest.retention_tier) if hold else manifest.retention_tier
        changed = False
        for key, version in self._versions(manifest):
            tags = self._store.object_tags(key, version)
            if tags.get(TIER_TAG) != want:
                self._store.put_object_tags(key, version, {**tags, TIER_TAG: want})
                changed = True
        if not changed:
            return None
        log.info("%s %s", "holding" if hold else "releasing", manifest.backup_id)
        return "held" if hold else "released"

    def _versions(self, manifest: Manifest) -> list[tuple[str, str]]:
        found = []
        if manifest.object.version_id:
            found.append((manifest.object.key, manifest.object.version_id))
        current = self._store.current_version(self._store.manifest_key(manifest.backup_id))
        if current is not None and not current.is_delete_marker:
            found.append((current.key, current.version_id))
        return found
