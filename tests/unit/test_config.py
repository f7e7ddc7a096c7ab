"""backstop.yaml validation: every problem is named with its file, line and path, in one sentence."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from backstop.config import DEFAULT_CONFIG, load_config, parse_config, parse_duration, resolve_config_path
from backstop.errors import ConfigError, UnknownDatabaseError

VALID = """\
bucket: backstop-prod
prefix: backups
databases:
  - name: orders
    engine: sqlite
    path: /srv/orders.db
  - name: uploads
    engine: files
    path: /srv/uploads
    compression: gzip
"""


def config_error(text: str) -> str:
    """The message of the ConfigError that ``text`` must raise."""
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def one_database(field: str, value: object) -> str:
    """A config whose only database has ``field: value`` on line 6 (JSON is valid YAML for scalars)."""
    return (
        "bucket: backstop-prod\n"
        "databases:\n"
        "  - name: orders\n"
        "    engine: sqlite\n"
        "    path: /srv/orders.db\n"
        f"    {field}: {json.dumps(value)}\n"
    )


def test_valid_config_loads_with_documented_defaults() -> None:
    config = parse_config(VALID)

    orders, uploads = config.databases
    assert config.bucket == "backstop-prod"
    assert orders.schedule == "cron(0 2 * * ? *)"
    assert orders.stale_after == timedelta(hours=26)
    assert (orders.compression, orders.level) == ("zstd", 2)
    assert (uploads.compression, uploads.level) == ("gzip", 6)
    assert config.database("uploads") is uploads


def test_unknown_database_error_lists_the_configured_ones() -> None:
    config = parse_config(VALID)

    with pytest.raises(UnknownDatabaseError) as caught:
        config.database("invoices")

    assert "'invoices'" in str(caught.value)
    assert "orders, uploads" in str(caught.value)


def test_invalid_database_name_names_file_line_and_path() -> None:
    text = VALID.replace("  - name: uploads", '  - name: ""')

    message = config_error(text)

    assert "backstop.yaml:7: databases[1].name: " in message


def test_unknown_engine_names_line_path_and_the_engines_that_exist() -> None:
    text = VALID.replace("engine: files", "engine: oracle")

    message = config_error(text)

    assert "backstop.yaml:7: databases[1]: engine must be one of files, mysql, postgres, sqlite" in message


def test_database_without_engine_is_refused_at_its_line() -> None:
    text = VALID.replace("    engine: files\n", "")

    message = config_error(text)

    assert "backstop.yaml:7: databases[1]: " in message


def test_duplicate_database_names_are_refused() -> None:
    text = VALID.replace("name: uploads", "name: orders")

    message = config_error(text)

    assert "'orders' is already the name of databases[0]" in message


def test_duplicate_database_name_points_at_the_second_entry() -> None:
    text = VALID.replace("name: uploads", "name: orders")

    message = config_error(text)

    assert "backstop.yaml:7: databases[1].name: " in message


def test_bad_duration_names_the_value_line_and_path() -> None:
    message = config_error(one_database("stale_after", "26x"))

    assert "backstop.yaml:6: databases[0].stale_after: '26x' is not a duration" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("26h", timedelta(hours=26)),
        ("90m", timedelta(minutes=90)),
        ("1d12h", timedelta(hours=36)),
        ("2w", timedelta(weeks=2)),
        ("30s", timedelta(seconds=30)),
        (" 26h ", timedelta(hours=26)),
        (3600, timedelta(hours=1)),
    ],
)
def test_durations_accept_units_and_seconds(text: object, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["26x", "h", "26", "26 h", "-5h", "0s", "0h0m", "1.5h", "", True, 2.5, None])
def test_durations_refuse_anything_else(text: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_bad_schedule_names_the_value_line_and_path() -> None:
    message = config_error(one_database("schedule", "every day at 2"))

    assert "backstop.yaml:6: databases[0].schedule: 'every day at 2' is not an EventBridge schedule" in message


@pytest.mark.parametrize(
    "schedule", ["cron(0 2 * * ? *)", "cron(15 */6 ? * MON-FRI *)", "rate(1 hour)", "rate(30 minutes)"]
)
def test_eventbridge_schedules_are_accepted(schedule: str) -> None:
    config = parse_config(one_database("schedule", schedule))

    assert config.databases[0].schedule == schedule


@pytest.mark.parametrize("schedule", ["cron(0 2 * * ?)", "rate(5 fortnights)", "rate(day)", "0 2 * * *", ""])
def test_malformed_schedules_are_refused(schedule: str) -> None:
    message = config_error(one_database("schedule", schedule))

    assert "backstop.yaml:6: databases[0].schedule: " in message


@pytest.mark.parametrize("bucket", ["My_Bucket", "ab", "a..b", "-bucket", "bucket-", "x" * 64, "bucket/name"])
def test_invalid_bucket_names_are_refused_at_line_one(bucket: str) -> None:
    message = config_error(VALID.replace("bucket: backstop-prod", f"bucket: {json.dumps(bucket)}"))

    assert "backstop.yaml:1: bucket: " in message
    assert "is not a valid S3 bucket name" in message


@pytest.mark.parametrize("bucket", ["abc", "backstop-prod.eu-west-1", "0" * 63])
def test_valid_bucket_names_are_accepted(bucket: str) -> None:
    config = parse_config(VALID.replace("bucket: backstop-prod", f"bucket: {json.dumps(bucket)}"))

    assert config.bucket == bucket


@pytest.mark.parametrize("prefix", ["../escape", "/absolute", "a//b", "a/../b", "a/./b", "with space", ""])
def test_key_prefixes_that_could_escape_or_collide_are_refused(prefix: str) -> None:
    message = config_error(VALID.replace("prefix: backups", f"prefix: {json.dumps(prefix)}"))

    assert "backstop.yaml:2: prefix: " in message


@pytest.mark.parametrize("prefix", ["backups", "team-a/backups_v2", "prod.backups/eu"])
def test_key_prefixes_of_plain_segments_are_accepted(prefix: str) -> None:
    config = parse_config(VALID.replace("prefix: backups", f"prefix: {json.dumps(prefix)}"))

    assert config.prefix == prefix


def test_every_problem_is_reported_at_once_with_its_own_line() -> None:
    text = VALID.replace("bucket: backstop-prod", "bucket: Bad_Bucket").replace("compression: gzip", "compression: lz4")

    message = config_error(text)

    assert "backstop.yaml:1: bucket: " in message
    assert "backstop.yaml:10: databases[1].compression: " in message


def test_nested_field_errors_name_the_nested_path() -> None:
    message = config_error(one_database("retention", {"daily": 0}))

    assert "backstop.yaml:6: databases[0].retention.daily: " in message


def test_unknown_keys_are_refused_not_ignored() -> None:
    message = config_error(VALID.replace("prefix: backups", "prefx: backups"))

    assert "backstop.yaml:2: prefx: Extra inputs are not permitted" in message


def test_missing_required_field_names_the_entry() -> None:
    message = config_error(VALID.replace("    path: /srv/uploads\n", ""))

    assert "backstop.yaml:7: databases[1].path: required field is missing" in message


def test_config_without_databases_is_refused() -> None:
    message = config_error("bucket: backstop-prod\ndatabases: []\n")

    assert "backstop.yaml:2: databases: " in message


def test_one_bad_entry_reports_only_its_own_problem() -> None:
    message = config_error(one_database("stale_after", "26x"))

    assert "at least 1 item" not in message
    assert message.count("backstop.yaml:") == 1  # "backstop.yaml is invalid: backstop.yaml:6: ..."


def test_malformed_yaml_names_its_line() -> None:
    message = config_error("bucket: backstop-prod\ndatabases:\n  - name: orders\n   engine: sqlite\n")

    assert message.startswith("backstop.yaml:4: ")


def test_a_yaml_list_instead_of_a_mapping_is_refused_in_one_sentence() -> None:
    message = config_error("- bucket: backstop-prod\n")

    assert message == "backstop.yaml: expected a mapping with at least 'bucket' and 'databases'."


def test_gzip_level_beyond_nine_is_refused_at_load_time() -> None:
    with pytest.raises(ConfigError, match=r"backstop\.yaml:\d+: databases\[1\]"):
        parse_config(VALID + "    compression_level: 12\n")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("", id="empty"),
        pytest.param("orders\n", id="trailing-newline"),
        pytest.param("../x", id="dotdot"),
        pytest.param("a/b", id="slash"),
        pytest.param("Orders", id="uppercase"),
        pytest.param("a" * 1024, id="1KB"),
        pytest.param("a\x00b", id="NUL"),
        pytest.param("a\nb", id="newline"),
        pytest.param("-x", id="leading-dash"),
    ],
)
def test_config_refuses_database_names_outside_the_allow_list(name: str) -> None:
    text = VALID.replace("  - name: uploads", f"  - name: {json.dumps(name)}")

    message = config_error(text)

    assert "backstop.yaml:7: databases[1].name: " in message


# -- finding and reading the file ---------------------------------------------------------------


def test_config_path_prefers_the_command_line_option(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_CONFIG", "/etc/backstop/from-env.yaml")

    assert resolve_config_path(Path("cli.yaml")) == Path("cli.yaml")


def test_config_path_falls_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKSTOP_CONFIG", "/etc/backstop/from-env.yaml")

    assert resolve_config_path(None) == Path("/etc/backstop/from-env.yaml")


@pytest.mark.parametrize("env", [None, ""])
def test_config_path_defaults_to_the_working_directory(monkeypatch: pytest.MonkeyPatch, env: str | None) -> None:
    if env is None:
        monkeypatch.delenv("BACKSTOP_CONFIG", raising=False)
    else:
        monkeypatch.setenv("BACKSTOP_CONFIG", env)

    assert resolve_config_path(None) == DEFAULT_CONFIG == Path("backstop.yaml")


def test_missing_config_file_is_one_sentence_saying_what_to_do(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.yaml"

    with pytest.raises(ConfigError) as caught:
        load_config(missing)

    message = str(caught.value)
    assert str(missing) in message
    assert "--config" in message
    assert "$BACKSTOP_CONFIG" in message
    assert "\n" not in message
    assert message.endswith(".")
    assert caught.value.__cause__ is None  # no chained traceback to print


def test_unreadable_config_path_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot be read: .*\.$") as caught:
        load_config(tmp_path)  # a directory

    assert "\n" not in str(caught.value)


def test_loaded_file_errors_name_that_file(tmp_path: Path) -> None:
    path = tmp_path / "prod.yaml"
    path.write_text(one_database("stale_after", "26x"), encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert f"{path}:6: databases[0].stale_after: " in str(caught.value)


def test_a_trailing_slash_in_the_prefix_is_dropped() -> None:
    config = parse_config(VALID.replace("prefix: backups", "prefix: backups/"))

    assert config.prefix == "backups"
