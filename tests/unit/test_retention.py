"""Grandfather-father-son tiers: the first backup of a year, month and ISO week is kept longer."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from backstop.config import Retention
from backstop.retention import configured_days, expiry_days, tier_for


def at(year: int, month: int, day: int, hour: int = 2) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def test_first_backup_ever_is_yearly() -> None:
    assert tier_for(at(2026, 6, 15), []) == "yearly"


def test_first_backup_of_a_new_year_is_yearly() -> None:
    assert tier_for(at(2027, 1, 1), [at(2026, 12, 31)]) == "yearly"


def test_first_backup_of_a_new_month_is_monthly() -> None:
    assert tier_for(at(2026, 3, 1), [at(2026, 1, 1), at(2026, 2, 28)]) == "monthly"


def test_first_backup_of_a_new_iso_week_is_weekly() -> None:
    # 2026-03-09 is a Monday; the week before had a backup on Sunday the 8th.
    assert tier_for(at(2026, 3, 9), [at(2026, 3, 1), at(2026, 3, 8)]) == "weekly"


def test_second_backup_of_the_same_week_is_daily() -> None:
    assert tier_for(at(2026, 3, 10), [at(2026, 3, 1), at(2026, 3, 9)]) == "daily"


def test_second_backup_of_the_same_day_is_daily() -> None:
    assert tier_for(at(2026, 3, 10, 14), [at(2026, 3, 1), at(2026, 3, 9), at(2026, 3, 10, 2)]) == "daily"


def test_iso_week_starting_in_december_belongs_to_the_next_iso_year() -> None:
    # Monday 2024-12-30 opens ISO week 2025-W01 while still in calendar year 2024 and its month.
    earlier = [at(2024, 1, 1), at(2024, 12, 1), at(2024, 12, 29)]  # the 29th is a Sunday of 2024-W52

    assert tier_for(at(2024, 12, 30), earlier) == "weekly"
    assert tier_for(at(2024, 12, 31), [*earlier, at(2024, 12, 30)]) == "daily"


def test_iso_week_spanning_new_year_does_not_repeat_weekly_after_the_yearly() -> None:
    # ISO week 2026-W53 runs from Monday 2026-12-28 to Sunday 2027-01-03.
    earlier = [at(2026, 1, 1), at(2026, 12, 1), at(2026, 12, 28)]

    assert tier_for(at(2027, 1, 1), earlier) == "yearly"
    assert tier_for(at(2027, 1, 2), [*earlier, at(2027, 1, 1)]) == "daily"
    assert tier_for(at(2027, 1, 4), [*earlier, at(2027, 1, 1), at(2027, 1, 2)]) == "weekly"


def test_week_with_same_number_in_another_year_does_not_count() -> None:
    # 2025-03-05 and 2026-03-04 are both in ISO week 10, of different ISO years.
    assert tier_for(at(2026, 3, 4), [at(2025, 3, 5), at(2026, 1, 1), at(2026, 3, 1)]) == "weekly"


def test_later_backups_do_not_demote_a_late_rerun() -> None:
    # The run of 2026-01-01 is repeated after the 2nd and 3rd were taken: it is still the year's first.
    assert tier_for(at(2026, 1, 1), [at(2026, 1, 2), at(2026, 1, 3)]) == "yearly"


def test_a_backup_at_the_same_time_does_not_count_as_earlier() -> None:
    assert tier_for(at(2026, 1, 1), [at(2026, 1, 1)]) == "yearly"


def test_configured_days_convert_each_tier_to_days() -> None:
    assert configured_days(Retention(daily=7, weekly=4, monthly=12, yearly=3)) == {
        "daily": 7,
        "weekly": 28,
        "monthly": 372,
        "yearly": 1098,
    }


def test_a_tier_kept_zero_times_lives_as_long_as_the_tier_below_it() -> None:
    days = expiry_days(Retention(daily=14, weekly=0, monthly=6, yearly=0))

    assert days == {"daily": 14, "weekly": 14, "monthly": 186, "yearly": 186}


_times = st.lists(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    min_size=1,
    max_size=200,
    unique=True,
).map(sorted)


def tiers_in_order(times: list[datetime]) -> list[str]:
    """Feed backups in time order, each one seeing the ones before it, as a schedule would."""
    return [tier_for(t, times[:i]) for i, t in enumerate(times)]


@given(_times)
def test_exactly_one_backup_per_year_is_yearly(times: list[datetime]) -> None:
    tiers = tiers_in_order(times)

    yearly = Counter(t.year for t, tier in zip(times, tiers, strict=True) if tier == "yearly")
    assert yearly == Counter(dict.fromkeys({t.year for t in times}, 1))


@given(_times)
def test_exactly_one_backup_per_month_is_monthly_or_better(times: list[datetime]) -> None:
    tiers = tiers_in_order(times)

    promoted = Counter((t.year, t.month) for t, tier in zip(times, tiers, strict=True) if tier in {"yearly", "monthly"})
    assert promoted == Counter(dict.fromkeys({(t.year, t.month) for t in times}, 1))


@given(_times)
def test_the_first_backup_of_every_iso_week_is_kept_beyond_daily(times: list[datetime]) -> None:
    tiers = tiers_in_order(times)

    seen: set[tuple[int, int]] = set()
    for t, tier in zip(times, tiers, strict=True):
        week = t.isocalendar()[:2]
        if week not in seen:
            assert tier != "daily", f"{t} opens ISO week {week} but is daily"
        seen.add(week)
    assert tiers.count("weekly") <= len(seen)
