"""Grandfather-father-son tier of a backup.

The first committed backup of a calendar year is ``yearly``, else the first of a month is
``monthly``, else the first of an ISO week is ``weekly``, else ``daily``. The tier is tagged on the
objects, and the bucket's lifecycle rules expire each tier after its own age.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from backstop.config import Retention
from backstop.manifest import Tier


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


def period_start(at: datetime) -> datetime:
    """The earliest time whose backups can change the tier of ``at``: the start of its year."""
    return at.replace(month=1, day=1, hour=0, minute=0, second=0, microsecond=0)


def expiry_days(retention: Retention) -> dict[Tier, int]:
    """Age in days after which the lifecycle rules expire each tier (0 = the tier is not kept)."""
    return {
        "daily": retention.daily,
        "weekly": retention.weekly * 7,
        "monthly": retention.monthly * 31,
        "yearly": retention.yearly * 366,
    }


def keeps(retention: Retention, tier: Tier, age: timedelta) -> bool:
    """Whether a backup of ``tier`` and ``age`` is still inside its retention (used by the freshness guard)."""
    return age < timedelta(days=expiry_days(retention)[tier])
