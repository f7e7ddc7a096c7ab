"""The freshness service on its own: a database whose listing fails is reported, not hidden, and not fatal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from backstop.adapters.s3_store import S3Store
from backstop.errors import StorageError
from backstop.names import backup_id_for
from backstop.services.freshness import Freshness, FreshnessRule, FreshnessService
from tests.fakes.vault import FakeBackups
from tests.handlers import commit_backup
from tests.services import RecordingNotifier
from tests.unit.test_manifest import sample_manifest

NOW = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
RULES = [FreshnessRule("orders", timedelta(hours=26)), FreshnessRule("uploads", timedelta(hours=26))]


def committed(vault: FakeBackups, database: str, at: datetime) -> None:
    """A committed backup of ``database`` at ``at`` in the fake vault: its artifact, then its manifest."""
    manifest = sample_manifest(backup_id_for(database, at), bucket=vault.bucket)
    vault.put_object(manifest.object.key, b"x" * 16)
    assert vault.put_manifest(manifest, {})


def test_a_database_that_cannot_be_listed_is_alerted_as_unknown_and_the_others_are_still_checked() -> None:
    # given uploads stale by two days, and the listing of orders (checked first) refused
    vault = FakeBackups()
    committed(vault, "orders", NOW - timedelta(hours=2))
    committed(vault, "uploads", NOW - timedelta(days=2))
    vault.fail_next(
        "newest_backup_id", StorageError("Listing backstop-test/backups/orders/ failed: S3 answered AccessDenied.")
    )
    notifier = RecordingNotifier()

    # when the check runs
    report = FreshnessService(vault, clock=lambda: NOW, notifier=notifier).check(RULES)  # type: ignore[arg-type]  # the check without drills needs only Backups

    # then orders is unknown (and needs a look), uploads is still found stale, and both are alerted
    assert [(f.database, f.status, f.is_stale) for f in report] == [
        ("orders", "unknown", True),
        ("uploads", "stale", True),
    ]
    [(orders_subject, orders_alert), (_, uploads_alert)] = notifier.alerts
    assert orders_subject == "Backstop: backups of orders are unknown"
    assert orders_alert["status"] == "unknown"
    assert "AccessDenied" in str(orders_alert["message"])
    assert uploads_alert["status"] == "stale"


def test_an_exactly_fresh_backup_is_not_alerted(store: S3Store) -> None:
    # given backups exactly stale_after old (the boundary counts as fresh) and a minute old
    commit_backup(store, "orders", NOW - timedelta(hours=26))
    commit_backup(store, "uploads", NOW - timedelta(minutes=1))
    notifier = RecordingNotifier()

    # when the check runs
    report = FreshnessService(store, clock=lambda: NOW, notifier=notifier).check(RULES)

    # then nothing is stale and nothing is published
    assert [f.status for f in report] == ["fresh", "fresh"]
    assert notifier.alerts == []


# -- the last successful drill ----------------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 8, tzinfo=UTC)
WEEK = timedelta(days=7)


def drilled(store: S3Store, database: str, days_ago: float) -> None:
    store.put_last_drill_success(
        database, {"database": database, "passed": True, "started_at": (NOW - timedelta(days=days_ago)).isoformat()}
    )


def check_drills(store: S3Store, notifier: RecordingNotifier) -> dict[str, Freshness]:
    rules = [FreshnessRule(db, timedelta(hours=26), WEEK) for db in ("recent", "late", "never", "new")]
    report = FreshnessService(store, clock=lambda: NOW, notifier=notifier).check(rules)
    return {entry.database: entry for entry in report}


def test_a_database_whose_last_successful_drill_is_older_than_twice_its_cadence_is_alerted(store: S3Store) -> None:
    # given four databases backed up today: drilled 3 days ago, drilled 15 days ago, never drilled in
    # the 20 days they have had backups, and never drilled but backed up only since yesterday
    for db in ("recent", "late", "never", "new"):
        commit_backup(store, db, NOW - timedelta(hours=2))
    commit_backup(store, "never", NOW - timedelta(days=20))
    commit_backup(store, "new", NOW - timedelta(days=1))
    drilled(store, "recent", 3)
    drilled(store, "late", 15)
    notifier = RecordingNotifier()

    found = check_drills(store, notifier)

    assert [found[db].drill_overdue for db in ("recent", "late", "never", "new")] == [
        False,
        True,
        True,
        False,
    ]
    assert found["late"].drill_age == timedelta(days=15)
    overdue = sorted(str(m["database"]) for _, m in notifier.alerts if m["event"] == "drill_overdue")
    assert overdue == ["late", "never"]
    assert not [m for _, m in notifier.alerts if m["event"] == "backup_stale"]


def entry(age: timedelta | None, drill_age: timedelta | None, *, overdue: bool, every: timedelta | None) -> Freshness:
    return Freshness(
        "orders", None, None, age, timedelta(hours=26), drill_age=drill_age, drill_overdue=overdue, drill_every=every
    )


def test_the_drill_age_metric_is_what_the_drill_overdue_alarm_compares_with() -> None:
    day, hour = timedelta(days=1), timedelta(hours=1)
    # a drilled database: its last good drill's age
    assert entry(hour, 3 * hour, overdue=False, every=day).drill_age_metric == 3 * 3600
    # never drilled, not yet due: 0, so the alarm stays quiet; once due: just past twice the cadence
    assert entry(hour, None, overdue=False, every=day).drill_age_metric == 0.0
    assert entry(hour, None, overdue=True, every=day).drill_age_metric == 2 * 86400 + 1
    # no metric for a database that does not drill, or has no backup to drill (the stale alarm covers it)
    assert entry(hour, None, overdue=True, every=None).drill_age_metric is None
    assert entry(None, None, overdue=True, every=day).drill_age_metric is None
