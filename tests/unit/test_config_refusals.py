"""backstop.yaml refuses what would only break later: each refusal is one sentence naming file, line and field."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest

from backstop.config import parse_config
from backstop.config.targets import SYSTEM_TREES, TOP_LEVEL_DIRECTORIES, safety_database
from backstop.errors import ConfigError


def refusal(text: str) -> str:
    """The message of the ConfigError ``text`` must raise (never another exception)."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    message = str(caught.value)
    assert "\n" not in message
    return message


def sqlite(name: str = "orders", path: str = "/srv/orders.db", *extra: str) -> str:
    """A sqlite database entry; ``extra`` lines are indented under it."""
    lines = [f"  - name: {name}", "    engine: sqlite", f"    path: {path}", *(f"    {line}" for line in extra)]
    return "\n".join(lines) + "\n"


def postgres(name: str, dbname: str, *extra: str, host: str = "db.internal") -> str:
    lines = [
        f"  - name: {name}",
        "    engine: postgres",
        f"    host: {host}",
        f"    dbname: {dbname}",
        "    user: backup",
        *(f"    {line}" for line in extra),
    ]
    return "\n".join(lines) + "\n"


HEAD = "bucket: backstop-prod\ndatabases:\n"  # databases[0] starts on line 3


# -- safety snapshots: their pseudo-database names belong to nobody else -------------------------


def test_a_database_named_like_another_databases_safety_snapshots_is_refused() -> None:
    # given orders restoring into staging, whose safety snapshots live under orders-pre-restore-staging,
    # and a real database of that very name (line 7)
    text = HEAD + sqlite("orders", "/srv/orders.db", "restore_targets: {staging: {path: /srv/staging.db}}")
    text += sqlite("orders-pre-restore-staging", "/srv/other.db")

    # when loaded, then it is refused at the second database's name
    message = refusal(text)

    assert "backstop.yaml:7: databases[1].name: 'orders-pre-restore-staging' is where restores of orders" in message
    assert "into staging keep their safety snapshots" in message


def test_the_safety_prefix_collision_is_refused_whichever_entry_comes_first() -> None:
    text = HEAD + sqlite("orders-pre-restore-staging", "/srv/other.db")
    text += sqlite("orders", "/srv/orders.db", "restore_targets: {staging: {path: /srv/staging.db}}")

    message = refusal(text)

    assert "backstop.yaml:9: databases[1].restore_targets.staging: " in message
    assert "'orders-pre-restore-staging', which is already the name of databases[0]" in message


def test_two_long_names_whose_safety_snapshots_are_cut_to_one_name_are_refused() -> None:
    # given two 63-character names differing only in their last character, both restoring into staging
    first, second = "a" * 62 + "1", "a" * 62 + "2"
    assert safety_database(first, "staging") == safety_database(second, "staging")  # the collision itself
    text = HEAD + sqlite(first, "/srv/one.db", "restore_targets: {staging: {path: /srv/one-staging.db}}")
    text += sqlite(second, "/srv/two.db", "restore_targets: {staging: {path: /srv/two-staging.db}}")

    message = refusal(text)

    assert "backstop.yaml:10: databases[1].restore_targets.staging: " in message
    assert "the same safety-snapshot name as databases[0].restore_targets.staging" in message


def test_long_names_whose_safety_snapshots_stay_apart_load() -> None:
    first, second = "b" + "a" * 40, "c" + "a" * 40
    text = HEAD + sqlite(first, "/srv/one.db", "restore_targets: {staging: {path: /srv/one-staging.db}}")
    text += sqlite(second, "/srv/two.db", "restore_targets: {staging: {path: /srv/two-staging.db}}")

    assert len(parse_config(text).databases) == 2


# -- names derived on the servers: fresh and pre-restore databases of two targets never meet -------

LONG = "app_" + "x" * 40  # longer than the 34 characters a pre-restore name keeps of a database name


@pytest.mark.parametrize("engine", ["postgres", "mysql"])
def test_server_targets_whose_derived_names_are_cut_to_one_are_refused(engine: str) -> None:
    # given two targets on one server whose names differ only after the part a derived name keeps
    text = HEAD + postgres(
        "app", "app", f"restore_targets: {{one: {{dbname: {LONG}_one}}, two: {{dbname: {LONG}_two}}}}"
    ).replace("engine: postgres", f"engine: {engine}")

    message = refusal(text)

    assert "backstop.yaml:8: databases[0].restore_targets.two.dbname: " in message
    assert f"restores into {LONG}_two and {LONG}_one (databases[0].restore_targets.one) on db.internal" in message
    assert "derive the same" in message


def test_long_server_targets_on_different_servers_load() -> None:
    text = HEAD + postgres(
        "app",
        "app",
        f"restore_targets: {{one: {{dbname: {LONG}_one}}, two: {{host: other.internal, dbname: {LONG}_two}}}}",
    )

    assert parse_config(text).databases[0].restore_targets["two"]["host"] == "other.internal"


def test_targets_of_two_databases_on_one_server_are_compared_too() -> None:
    text = HEAD + postgres("one", "one", f"restore_targets: {{staging: {{dbname: {LONG}_a}}}}")
    text += postgres("two", "two", f"restore_targets: {{staging: {{dbname: {LONG}_b}}}}")

    message = refusal(text)

    assert "backstop.yaml:14: databases[1].restore_targets.staging.dbname: " in message
    assert "databases[0].restore_targets.staging" in message


@pytest.mark.parametrize("dbname", ["app_pre_restore_20260101t020000z", "app_restore_20260101t020000z"])
def test_a_server_database_named_like_a_restores_derived_database_is_refused(dbname: str) -> None:
    text = HEAD + postgres("app", dbname)

    message = refusal(text)

    assert f"backstop.yaml:6: databases[0].dbname: {dbname!r} is named like a database a restore derives" in message


@pytest.mark.parametrize("dbname", ["postgres", "template0", "template1"])
def test_a_postgres_target_on_the_servers_own_database_is_refused(dbname: str) -> None:
    text = HEAD + postgres("app", "app", f"restore_targets: {{staging: {{dbname: {dbname}}}}}")

    message = refusal(text)

    assert "backstop.yaml:8: databases[0].restore_targets.staging: " in message
    assert f"is {dbname}, the server's own database" in message


@pytest.mark.parametrize("dbname", ["mysql", "information_schema", "performance_schema", "sys"])
def test_a_mysql_target_on_the_servers_own_database_is_refused(dbname: str) -> None:
    text = HEAD + postgres("app", "app", f"restore_targets: {{staging: {{dbname: {dbname}}}}}").replace(
        "engine: postgres", "engine: mysql"
    )

    message = refusal(text)

    assert f"is {dbname}, the server's own database" in message


# -- durations: bounded, and an absurd one is a sentence, not an OverflowError ---------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("stale_after", "99999999999d"),
        ("stale_after", "9" * 5000 + "s"),  # past Python's own limit on digits in an int
        ("stale_after", 10**30),
        ("stale_after", "500d"),
        ("stale_after", "1m"),
        ("stale_after", 0),
        ("stale_after", -60),
        ("busy_timeout", "1d"),
        ("drill", {"rto": "30d"}),
        ("drill", {"rto": "99999999999w"}),
    ],
)
def test_out_of_range_durations_are_refused_in_one_sentence(field: str, value: object) -> None:
    message = refusal(HEAD + sqlite("orders", "/srv/orders.db", f"{field}: {json.dumps(value)}"))

    assert f"backstop.yaml:6: databases[0].{field}" in message
    assert "Overflow" not in message


@pytest.mark.parametrize(
    ("field", "value"), [("connect_timeout", "1h"), ("lock_wait_timeout", "2d"), ("connect_timeout", 10**20)]
)
def test_out_of_range_server_timeouts_are_refused(field: str, value: object) -> None:
    message = refusal(HEAD + postgres("app", "app", f"{field}: {json.dumps(value)}"))

    assert f"backstop.yaml:8: databases[0].{field}: " in message


def test_durations_inside_their_ranges_still_load() -> None:
    text = HEAD + sqlite("orders", "/srv/orders.db", "stale_after: 32d", "busy_timeout: 30s", "drill: {rto: 2h}")
    text += postgres("app", "app", "connect_timeout: 30s", "lock_wait_timeout: 5m")

    orders, app = parse_config(text).databases

    assert orders.stale_after == timedelta(days=32) and orders.drill and orders.drill.rto == timedelta(hours=2)
    assert app.connect_timeout == timedelta(seconds=30)


# -- sizes and budgets --------------------------------------------------------------------------


@pytest.mark.parametrize("budget", [0, -1, "0GiB", "0B", True, 1.5, "99999PiB", 2**70])
def test_a_sweep_budget_that_no_backup_fits_or_no_disk_holds_is_refused(budget: object) -> None:
    message = refusal(f"sweep: {{budget: {json.dumps(budget)}}}\n" + HEAD + sqlite())

    assert "backstop.yaml:1: sweep.budget: " in message


@pytest.mark.parametrize(("budget", "size"), [("1GiB", 1024**3), (1, 1), ("500MB", 500 * 10**6)])
def test_sweep_budgets_in_range_load(budget: object, size: int) -> None:
    assert parse_config(f"sweep: {{budget: {json.dumps(budget)}}}\n" + HEAD + sqlite()).sweep.budget == size


def test_an_exact_count_limit_past_any_table_is_refused() -> None:
    message = refusal(HEAD + postgres("app", "app", f"exact_count_limit: {10**30}"))

    assert "backstop.yaml:8: databases[0].exact_count_limit: " in message


# -- paths: absolute, plain, and never a system directory as a restore target ---------------------


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        (sqlite("orders", "orders.db"), "databases[0].path"),
        (sqlite("orders", "./data/orders.db"), "databases[0].path"),
        (sqlite("orders", "/srv/../etc/orders.db"), "databases[0].path"),
        (sqlite("orders", "/srv/orders.db", "drill: {path: scratch}"), "databases[0].drill.path"),
        (
            "  - name: uploads\n    engine: files\n    path: srv/uploads\n",
            "databases[0].path",
        ),
    ],
)
def test_relative_and_dotdot_paths_are_refused(entry: str, where: str) -> None:
    message = refusal(HEAD + entry)

    assert re.search(rf"backstop\.yaml:\d+: {re.escape(where)}: ", message)
    assert "absolute" in message or "'..'" in message


def test_a_relative_work_dir_is_refused() -> None:
    message = refusal("work_dir: tmp/backstop\n" + HEAD + sqlite())

    assert "backstop.yaml:1: work_dir: 'tmp/backstop' is not an absolute path" in message


@pytest.mark.parametrize("target", ["staging/orders.db", "../orders.db", "/srv/x/../../etc/orders.db"])
def test_a_relative_restore_target_is_refused(target: str) -> None:
    message = refusal(HEAD + sqlite("orders", "/srv/orders.db", f"restore_targets: {{staging: {{path: {target}}}}}"))

    assert "backstop.yaml:6: databases[0].restore_targets.staging: " in message


SYSTEM_TARGETS = [
    "/",
    "/etc",
    "/etc/orders.db",
    "/usr",
    "/usr/local/lib/orders.db",
    "/bin",
    "/boot",
    "/dev",
    "/dev/shm/orders.db",
    "/proc",
    "/sys",
    "/var",
    "/var/lib",
    "/home",
    "/root",
    "/tmp",
    "/lib64",
]


@pytest.mark.parametrize("target", SYSTEM_TARGETS)
def test_a_system_directory_as_restore_target_is_refused(target: str) -> None:
    text = HEAD + "  - name: uploads\n    engine: files\n    path: /srv/uploads\n"
    text += f"    restore_targets: {{staging: {{path: {target}}}}}\n"

    message = refusal(text)

    assert "backstop.yaml:6: databases[0].restore_targets.staging: " in message
    assert "system directory" in message


def test_the_documented_system_list_is_the_one_enforced() -> None:
    # every listed directory is refused; the docs print the same two lists
    docs = Path(__file__).parents[2].joinpath("docs", "configuration.md").read_text(encoding="utf-8")
    for directory in [*SYSTEM_TREES, *TOP_LEVEL_DIRECTORIES]:
        assert f"`{directory}`" in docs
        text = HEAD + sqlite("orders", "/srv/orders.db", f"restore_targets: {{staging: {{path: {directory}}}}}")
        assert "system directory" in refusal(text)


def test_in_place_over_a_system_directory_is_refused() -> None:
    text = HEAD + "  - name: etc\n    engine: files\n    path: /etc\n    restore_targets: {in-place: {}}\n"

    message = refusal(text)

    assert "backstop.yaml:6: databases[0].restore_targets.in-place: " in message


@pytest.mark.parametrize(
    "target", ["/var/lib/app/orders.db", "/home/alice/orders.db", "/srv/staging/orders.db", "/tmp/x/orders.db"]
)
def test_ordinary_places_under_top_level_directories_are_accepted(target: str) -> None:
    text = HEAD + sqlite("orders", "/srv/orders.db", f"restore_targets: {{staging: {{path: {target}}}}}")

    assert parse_config(text).databases[0].restore_targets["staging"]["path"] == target


def test_a_target_inside_the_source_or_holding_it_is_refused() -> None:
    text = HEAD + "  - name: uploads\n    engine: files\n    path: /srv/uploads\n"
    text += "    restore_targets: {inside: {path: /srv/uploads/restored}, around: {path: /srv}}\n"

    message = refusal(text)

    assert "backstop.yaml:6: databases[0].restore_targets.inside: " in message
    assert "overlaps the source" in message


# -- numbers are numbers, booleans are booleans --------------------------------------------------


@pytest.mark.parametrize(
    ("snippet", "where"),
    [
        ("retention: {daily: true}", "databases[0].retention.daily"),
        ("retention: {keep_last: false}", "databases[0].retention.keep_last"),
        ("retention: {weekly: 4.0}", "databases[0].retention.weekly"),
        ('retention: {monthly: "12"}', "databases[0].retention.monthly"),
        ("compression_level: true", "databases[0].compression_level"),
        ("lock_retries: true", "databases[0].lock_retries"),
        ("function: {memory_mb: 2048.0}", "databases[0].function.memory_mb"),
        ("drill: {among: true}", "databases[0].drill.among"),
    ],
)
def test_a_boolean_or_other_non_number_where_a_number_is_meant_is_refused(snippet: str, where: str) -> None:
    message = refusal(HEAD + sqlite("orders", "/srv/orders.db", snippet))

    assert f"backstop.yaml:6: {where}: " in message


def test_a_boolean_number_says_what_it_read() -> None:
    message = refusal(HEAD + sqlite("orders", "/srv/orders.db", "retention: {daily: true}"))

    assert "databases[0].retention.daily: expected a whole number, not true" in message


@pytest.mark.parametrize(
    ("top", "where"),
    [
        ("upload: {concurrency: true}", "upload.concurrency"),
        ("storage: {cold_after_days: true}", "storage.cold_after_days"),
        ("storage: {object_lock: {days: true}}", "storage.object_lock.days"),
        ("restore: {safety_snapshot_days: true}", "restore.safety_snapshot_days"),
        ("restore: {keep_pre_restore: {count: true}}", "restore.keep_pre_restore.count"),
        ("runner: {log_retention_days: true}", "runner.log_retention_days"),
        ("runner: {log_retention_days: 90.0}", "runner.log_retention_days"),
        ("restore: {distinct_approver: 1}", "restore.distinct_approver"),
        ('restore: {distinct_approver: "true"}', "restore.distinct_approver"),
        ("sweep: {repair: 0}", "sweep.repair"),
    ],
)
def test_top_level_numbers_and_booleans_are_strict(top: str, where: str) -> None:
    message = refusal(top + "\n" + HEAD + sqlite())

    assert f"backstop.yaml:1: {where}: " in message


def test_a_port_given_as_true_is_refused_on_a_target_too() -> None:
    text = HEAD + postgres("app", "app", "restore_targets: {staging: {dbname: app_staging, port: true}}")

    message = refusal(text)

    assert "backstop.yaml:8: databases[0].restore_targets.staging: " in message


def test_proper_numbers_and_booleans_still_load() -> None:
    text = (
        "upload: {concurrency: 8}\nrunner: {log_retention_days: 30}\n"
        "restore: {distinct_approver: true, keep_pre_restore: {count: 5, days: 30}}\nsweep: {repair: false}\n"
        + HEAD
        + sqlite("orders", "/srv/orders.db", "retention: {daily: 14, keep_last: 2}", "compression_level: 5")
        + postgres("app", "app", "port: 6432", "restore_targets: {staging: {dbname: app_staging, port: 5433}}")
    )

    config = parse_config(text)

    assert (config.upload.concurrency, config.runner.log_retention_days) == (8, 30)
    assert config.restore.distinct_approver is True
    assert (config.restore.keep_pre_restore.count, config.restore.keep_pre_restore.days) == (5, 30)
    assert config.databases[0].retention.daily == 14 and config.databases[1].port == 6432
