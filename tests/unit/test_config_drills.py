"""Drill and sweep settings: drills restore only into scratch space, never into a source or a restore target."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backstop.config import FileDrill, PostgresDatabase, SqliteDatabase, parse_config
from backstop.errors import ConfigError

SQLITE = """
bucket: b-backups
databases:
  - name: shop
    engine: sqlite
    path: /data/shop/shop.db
    restore_targets: {staging: {path: /staging/shop.db}}
"""

POSTGRES = """
bucket: b-backups
databases:
  - name: app
    engine: postgres
    host: db.internal
    dbname: app
    user: backup
    restore_targets: {staging: {host: staging.internal}}
"""


def test_file_databases_drill_weekly_in_scratch_space_and_servers_only_with_a_scratch_server() -> None:
    shop = parse_config(SQLITE).databases[0]
    app = parse_config(POSTGRES).databases[0]

    assert isinstance(shop, SqliteDatabase) and shop.drill == FileDrill()
    assert shop.drill.every == timedelta(days=7) and shop.drill.pick == "newest" and shop.drill.path is None
    assert isinstance(app, PostgresDatabase) and app.drill is None


@pytest.mark.parametrize(
    ("scratch", "what"),
    [
        ("/data/shop/shop.db", "the database's own path"),
        ("/data/shop", "the database's own path"),  # the source's directory
        ("/data/shop/shop.db/drills", "the database's own path"),
        ("/staging", "restore target staging"),
    ],
)
def test_a_drill_path_touching_the_source_or_a_restore_target_is_refused(scratch: str, what: str) -> None:
    text = SQLITE + f"    drill: {{path: {scratch}}}\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert "databases[0].drill.path" in str(refused.value)
    assert f"overlaps {what}" in str(refused.value)


def test_a_scratch_directory_elsewhere_is_accepted() -> None:
    shop = parse_config(SQLITE + "    drill: {path: /scratch/drills, every: 1d, pick: random, among: 3, rto: 15m}\n")
    drill = shop.databases[0].drill
    assert drill is not None and drill.path is not None and str(drill.path) == "/scratch/drills"
    assert (drill.every, drill.pick, drill.among, drill.rto) == (timedelta(days=1), "random", 3, timedelta(minutes=15))


@pytest.mark.parametrize(
    ("server", "what"),
    [
        ("{host: db.internal, user: drill}", "the database's own server"),
        ("{host: db.internal, port: 5432, user: drill}", "the database's own server"),
        ("{host: staging.internal, user: drill}", "restore target staging"),
    ],
)
def test_a_drill_server_that_is_the_source_or_a_restore_target_is_refused(server: str, what: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(POSTGRES + f"    drill: {{server: {server}}}\n")
    assert "databases[0].drill.server" in str(refused.value)
    assert f"is {what}" in str(refused.value)


def test_a_scratch_server_is_accepted_on_another_host_or_port() -> None:
    for server in ("{host: drills.internal, user: drill}", "{host: db.internal, port: 6543, user: drill}"):
        app = parse_config(POSTGRES + f"    drill: {{server: {server}}}\n").databases[0]
        assert app.drill is not None


def test_the_sweep_has_a_daily_default_and_a_byte_budget_in_units() -> None:
    assert parse_config(SQLITE).sweep.budget == 10 * 1024**3
    config = parse_config("sweep: {every: 12h, budget: 2GiB}\n" + SQLITE)
    assert (config.sweep.every, config.sweep.budget) == (timedelta(hours=12), 2 * 1024**3)
    with pytest.raises(ConfigError, match=r"sweep\.every: sweep every 1h to 30d"):
        parse_config("sweep: {every: 10m}\n" + SQLITE)
