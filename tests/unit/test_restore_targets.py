"""Restore targets: only declared ones, validated like sources, never the source under another name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backstop.config import MysqlDatabase, PostgresDatabase, SqliteDatabase, parse_config
from backstop.config.targets import resolve_target, target_for
from backstop.errors import ConfigError, RestoreError

SQLITE = SqliteDatabase.model_validate(
    {"name": "orders", "engine": "sqlite", "path": "/data/orders.db", "schedule": "rate(1 day)", "stale_after": "26h"}
)
POSTGRES = PostgresDatabase.model_validate(
    {
        "name": "app",
        "engine": "postgres",
        "host": "db.internal",
        "dbname": "app",
        "user": "backup",
        "password_env": "APP_PW",
        "schedule": "rate(1 day)",
        "stale_after": "26h",
    }
)


def test_a_local_target_replaces_the_path() -> None:
    target = resolve_target(SQLITE, "staging", {"path": "/staging/orders.db"})
    assert isinstance(target, SqliteDatabase) and target.path == Path("/staging/orders.db")


def test_a_server_target_replaces_host_database_and_password_source() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:staging-pw"
    target = resolve_target(
        POSTGRES, "staging", {"host": "staging.internal", "dbname": "app_s", "password_secret": arn}
    )
    assert isinstance(target, PostgresDatabase)
    assert (target.host, target.dbname, target.password_secret, target.password_env) == (
        "staging.internal",
        "app_s",
        arn,
        None,
    )


def test_in_place_is_the_source_itself() -> None:
    assert resolve_target(SQLITE, "in-place", {}) == SQLITE.model_copy(update={"restore_targets": {}})


@pytest.mark.parametrize(
    ("db", "name", "overrides", "fragment"),
    [
        (SQLITE, "staging", {"host": "x"}, "may set only path"),
        (SQLITE, "Staging!", {"path": "/x"}, "must match"),
        (SQLITE, "staging", {}, "names no location"),
        (SQLITE, "in-place", {"path": "/x"}, "takes no fields"),
        (SQLITE, "copy", {"path": "/data/orders.db"}, "is the source itself"),
        (POSTGRES, "copy", {"host": "db.internal"}, "is the source itself"),
        (POSTGRES, "staging", {"port": 99999}, "port"),
        (POSTGRES, "staging", {"password": "hunter2"}, "may set only"),
    ],
)
def test_bad_targets_are_refused_naming_the_problem(
    db: Any, name: str, overrides: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        resolve_target(db, name, overrides)
    assert fragment in str(refused.value)
    assert "hunter2" not in str(refused.value)

    # and the same target in backstop.yaml is refused where it is written
    entry = {**db.model_dump(mode="json", exclude_defaults=True), "restore_targets": {name: overrides}}
    text = yaml.safe_dump({"bucket": "b-backups", "databases": [entry]}, sort_keys=False)
    with pytest.raises(ConfigError) as in_file:
        parse_config(text)
    message = str(in_file.value)
    assert fragment in message
    assert f"databases[0].restore_targets.{name}" in message
    assert "hunter2" not in message


def test_declared_targets_come_from_backstop_yaml() -> None:
    text = """
bucket: b-backups
restore:
  approval_timeout: 2h
  distinct_approver: true
databases:
  - name: orders
    engine: sqlite
    path: /data/orders.db
    restore_targets:
      staging: {path: /staging/orders.db}
      in-place: {}
"""
    config = parse_config(text)
    db = config.database("orders")
    assert target_for(db, "staging") == resolve_target(db, "staging", {"path": "/staging/orders.db"})
    assert target_for(db, "in-place").model_dump(exclude={"restore_targets"}) == db.model_dump(
        exclude={"restore_targets"}
    )
    assert (config.restore.approval_timeout.total_seconds(), config.restore.distinct_approver) == (7200, True)


@pytest.mark.parametrize("wait", ["1m", "8d", "90s"])
def test_an_approval_timeout_out_of_range_is_refused(wait: str) -> None:
    text = f"bucket: bkt\nrestore: {{approval_timeout: {wait}}}\ndatabases: [{{name: o, engine: sqlite, path: /o}}]"
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert "restore.approval_timeout: wait 5m to 7d" in str(refused.value)


def test_an_undeclared_target_is_refused_naming_the_declared_ones() -> None:
    db = SQLITE.model_copy(update={"restore_targets": {"staging": {"path": "/s.db"}, "in-place": {}}})
    with pytest.raises(RestoreError) as refused:
        target_for(db, "production")
    assert "in-place, staging" in str(refused.value)


def test_a_mysql_target_keeps_its_engine() -> None:
    source = MysqlDatabase.model_validate(
        {
            "name": "shop",
            "engine": "mysql",
            "host": "h",
            "dbname": "shop",
            "user": "u",
            "schedule": "rate(1 day)",
            "stale_after": "26h",
        }
    )
    assert isinstance(resolve_target(source, "staging", {"dbname": "shop_staging"}), MysqlDatabase)
