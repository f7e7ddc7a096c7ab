"""The keep-last-good guard function, driven with events/guard/scheduled.json on real backups.

Its scope (the databases and their retention) is its environment, as infra sets it; the event carries the time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import ConfigError
from backstop.events import EventRefusedError
from backstop.handlers.retention_guard import handler
from tests.catalog import publish_catalog, sqlite_entries
from tests.conftest import BUCKET, create_orders_db
from tests.handlers import FakeContext, load_event, metric_values
from tests.services import at, run_backup

SAMPLE = "guard/scheduled.json"


@pytest.fixture
def environment(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    monkeypatch.setenv("BACKSTOP_PREFIX", "backups")
    publish_catalog(monkeypatch, sqlite_entries("orders", "uploads", orders={"keep_last": 2}))


def tier_of(s3: Any, key: str, version_id: str | None) -> str:
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=key, VersionId=version_id)["TagSet"]
    tier: str = {t["Key"]: t["Value"] for t in tags}["backstop:tier"]
    return tier


def test_the_scheduled_guard_holds_each_databases_newest_good_backups(
    environment: None,
    make_config: Callable[..., Config],
    store: S3Store,
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # given three backups of orders (keep_last 2) and one of uploads (keep_last 3 by default)
    config = make_config(
        *(
            {"name": name, "engine": "sqlite", "path": str(create_orders_db(tmp_path / f"{name}.db", rows=50))}
            for name in ("orders", "uploads")
        )
    )
    orders = [run_backup(config, store, at(day), database="orders").manifest for day in (20, 21, 22)]
    uploads = run_backup(config, store, at(21), database="uploads").manifest

    # when the schedule invokes the guard
    result = handler(load_event(SAMPLE), FakeContext())

    # then the newest two of orders and the one of uploads are held, artifact and manifest alike
    assert result["held"] == {"orders": [m.backup_id for m in orders[1:]], "uploads": [uploads.backup_id]}
    assert result["checked_at"] == "2026-11-23T04:00:00+00:00"
    for manifest in (*orders[1:], uploads):
        assert tier_of(s3, manifest.object.key, manifest.object.version_id).startswith("held-")
        manifest_version = store.current_version(store.manifest_key(manifest.backup_id))
        assert manifest_version is not None
        assert tier_of(s3, manifest_version.key, manifest_version.version_id).startswith("held-")
    assert not tier_of(s3, orders[0].object.key, orders[0].object.version_id).startswith("held-")
    # and the count held is a metric per database
    assert metric_values(capsys.readouterr().out, "HeldBackups") == [
        ({"service": "guard", "database": "orders"}, 2.0),
        ({"service": "guard", "database": "uploads"}, 1.0),
        ({"service": "guard"}, 3.0),  # and in all, the data point whose absence is guard-not-running
    ]


def test_a_run_with_nothing_to_hold_still_reports_that_it_ran(
    environment: None, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # given an empty vault: an outage since the start, or a new deployment
    handler(load_event(SAMPLE), FakeContext())

    # then the run's count is still a data point: guard-not-running alarms on its absence, not on zero
    assert ({"service": "guard"}, 0.0) in metric_values(capsys.readouterr().out, "HeldBackups")


@pytest.mark.parametrize(
    "event",
    [
        {"checked_at": "2026-11-23T04:00:00Z", "retention": {"orders": {"keep_last": 0}}},
        {"databases": ["orders"]},
        {"checked_at": "yesterday"},
    ],
)
def test_an_event_that_carries_more_than_the_time_is_refused(environment: None, event: dict[str, Any]) -> None:
    with pytest.raises(EventRefusedError, match="keep-last-good guard event is refused"):
        handler(event, FakeContext())


def test_a_guard_deployed_without_its_catalog_says_so(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_BUCKET", BUCKET)
    with pytest.raises(ConfigError, match="BACKSTOP_CATALOG: Field required; BACKSTOP_CATALOG_DIGEST: Field required"):
        handler(load_event(SAMPLE), FakeContext())


def test_a_guard_whose_catalog_was_changed_outside_a_deploy_holds_nothing(
    environment: None, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a catalog parameter rewritten after the deploy (orders' keep_last lowered to 1)
    boto3.client("ssm").put_parameter(
        Name="/backstop/Backstop/databases/orders",
        Value='{"engine":"sqlite","name":"orders","path":"/mnt/data/orders.db","retention":{"keep_last":1}}',
        Type="String",
        Overwrite=True,
    )

    # when the guard runs, then it refuses the catalog and changes no tag
    with pytest.raises(ConfigError, match="is not the one this function was deployed with"):
        handler(load_event(SAMPLE), FakeContext())
