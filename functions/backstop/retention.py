"""Grandfather-father-son tier of a backup.

The first committed backup of a calendar year is ``yearly``, else the first of a month is
``monthly``, else the first of an ISO week is ``weekly``, else ``daily``. The tier is tagged on the
objects, and the bucket's lifecycle rules expire each tier after its own age.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Literal

from backstop.config import Config, Retention
from backstop.manifest import Tier
from backstop.ports import LockUntil


def tier_for(at: datetime, earlier: Iterable[datetime]) -> Tier:
    """The tier of a backup taken at ``at`` given the times of the database's committed backups.

    Backups at or after ``at`` are ignored, so a late re-run of an old schedule does not demote
    the tier of the backup it re-creates.
    """
    before = [t for t in earlier if t < at]
    if not any(t.year == at.year for t in before):
        return "yearly"
    if not any((t.year, t.month) == (at.year, at.month) for t in before):
        return "monthly"
    if not any(t.isocalendar()[:2] == at.isocalendar()[:2] for t in before):
        return "weekly"
    return "daily"


TIER_TAG = "backstop:tier"
"""The object tag that carries a backup's tier; the vault's lifecycle rules match on it."""

ENGINE_TAG = "backstop:engine"
DATABASE_TAG = "backstop:database"
BACKUP_TAG_KEYS = (TIER_TAG, ENGINE_TAG, DATABASE_TAG)
"""Every tag an artifact or manifest carries (``S3Store.tags_for``)."""

HELD = "held-"
"""Prefix of the tier tag of a backup the keep-last-good guard holds (``held-yearly``): no lifecycle
rule matches it, so lifecycle never expires it (``services/retention_guard.py``)."""


def held(tier: str) -> str:
    """The tier tag of a held backup of ``tier``."""
    return f"{HELD}{tier}"


TIERS: tuple[Tier, ...] = ("daily", "weekly", "monthly", "yearly")
"""Lowest first: the order in which a tier's age carries up to the next."""


def configured_days(retention: Retention) -> dict[Tier, int]:
    """Each tier's configured age in days (7 daily = 7, 4 weekly = 28, 12 monthly = 372, 3 yearly = 1098)."""
    return {
        "daily": retention.daily,
        "weekly": retention.weekly * 7,
        "monthly": retention.monthly * 31,
        "yearly": retention.yearly * 366,
    }


def expiry_days(retention: Retention) -> dict[Tier, int]:
    """Age in days after which each tier expires: its configured age, never less than a lower tier's.

    A tier configured as 0 therefore lives as long as the tier below it: expiring it sooner would
    punch holes in the daily series (every Monday's backup gone while Sunday's and Tuesday's stay).
    The bucket's lifecycle rules are built from this, and nothing else decides retention.
    """
    configured = configured_days(retention)
    days: dict[Tier, int] = {}
    floor = 0
    for tier in TIERS:
        floor = max(floor, configured[tier])
        days[tier] = floor
    return days


def lock_for(
    config: Config, retention: Retention, tier: Tier, backup_type: str, written_at: datetime
) -> LockUntil | None:
    """The Object Lock an artifact or manifest is written with: until its own tier expires.

    Lifecycle expires a version ``expiry_days`` after it was written (a safety snapshot after
    ``restore.safety_snapshot_days``), so a lock until exactly then never stops lifecycle, and the
    version stays deletable by nobody for as long as its tier keeps it. None without ``storage.object_lock``.
    """
    lock = config.storage.object_lock
    if lock is None:
        return None
    days = config.restore.safety_snapshot_days if backup_type == "pre-restore" else expiry_days(retention)[tier]
    mode: Literal["GOVERNANCE", "COMPLIANCE"] = "COMPLIANCE" if lock.mode == "compliance" else "GOVERNANCE"
    return LockUntil(mode=mode, until=written_at + timedelta(days=days))
