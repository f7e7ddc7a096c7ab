"""backstop.yaml fields that shape the deployment: functions, VPC, EFS, alerts, storage, freshness, runner."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import PurePosixPath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backstop.config import (
    DEPLOYMENT_FIELDS,
    Config,
    FunctionLimits,
    SqliteDatabase,
    format_duration,
    parse_config,
    parse_duration,
)
from backstop.config.environment import DatabaseFunctionSettings
from backstop.errors import ConfigError

HEAD = "bucket: backstop-prod\n"
SQLITE = "databases:\n  - name: orders\n    engine: sqlite\n    path: /mnt/data/orders.db\n"
NETWORK = (
    "    vpc:\n"
    "      subnet_ids: [subnet-0123456789abcdef0]\n"
    "      security_group_ids: [sg-0123456789abcdef0]\n"
    "    efs:\n"
    "      file_system_id: fs-0123456789abcdef0\n"
    "      access_point_id: fsap-0123456789abcdef0\n"
    "      mount_path: /mnt/data\n"
)


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    return str(caught.value)


def database_field(field: str, value: object) -> str:
    """A config whose only database has ``field: value`` on line 6."""
    return HEAD + SQLITE + f"    {field}: {json.dumps(value)}\n"


def top_level(field: str, value: object) -> str:
    """A config with ``field: value`` on line 2."""
    return HEAD + f"{field}: {json.dumps(value)}\n" + SQLITE


# -- defaults ----------------------------------------------------------------------------------------


def test_deployment_fields_have_documented_defaults() -> None:
    config = parse_config(HEAD + SQLITE)
    (orders,) = config.databases

    assert orders.function == FunctionLimits(memory_mb=2048, timeout=timedelta(minutes=15), ephemeral_storage_mb=2048)
    assert orders.vpc is None
    assert isinstance(orders, SqliteDatabase)
    assert orders.efs is None
    assert orders.timezone == "UTC"
    assert config.alerts.emails == ()
    assert (config.storage.cold_after_days, config.storage.noncurrent_days, config.storage.access_log_days) == (
        30,
        30,
        365,
    )
    assert (config.storage.yearly_storage_class, config.storage.object_lock, config.storage.writers) == (
        "GLACIER_IR",
        None,
        (),
    )
    assert config.freshness.every == timedelta(hours=1)
    assert (config.runner.architecture, config.runner.log_retention_days) == ("x86_64", 90)


def test_a_full_deployment_section_is_accepted() -> None:
    text = (
        HEAD
        + "alerts: {emails: [oncall@example.com]}\n"
        + "storage: {object_lock: {mode: compliance, days: 7}, writers: [arn:aws:iam::123456789012:role/ops]}\n"
        + "freshness: {every: 15m}\n"
        + "runner: {architecture: arm64, log_retention_days: 365}\n"
        + SQLITE
        + "    function: {memory_mb: 4096, timeout: 5m, ephemeral_storage_mb: 10240}\n"
        + NETWORK
    )

    config = parse_config(text)
    (orders,) = config.databases

    assert isinstance(orders, SqliteDatabase)
    assert orders.efs is not None
    assert orders.efs.mount_path == PurePosixPath("/mnt/data")
    assert orders.function.timeout == timedelta(minutes=5)
    assert config.storage.object_lock is not None
    assert config.storage.object_lock.mode == "compliance"


# -- each field names its path -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("function", {"memory_mb": 64}, "databases[0].function.memory_mb", "greater than or equal to 128"),
        ("function", {"memory_mb": 20000}, "databases[0].function.memory_mb", "less than or equal to 10240"),
        ("function", {"timeout": "20m"}, "databases[0].function.timeout", "between 10s and 15m"),
        ("function", {"timeout": "5s"}, "databases[0].function.timeout", "between 10s and 15m"),
        ("function", {"ephemeral_storage_mb": 100}, "databases[0].function.ephemeral_storage_mb", "512"),
        ("function", {"cpu": 2}, "databases[0].function.cpu", "Extra inputs are not permitted"),
        ("timezone", "Mars/Olympus", "databases[0].timezone", "is not a known time zone"),
        ("timezone", "UTC; rm -rf", "databases[0].timezone", "is not a time zone name"),
        ("vpc", {"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-0123456789abcdef0"]},
         "databases[0].vpc.subnet_ids[0]", "'subnet-1' is not a subnet id"),
        ("vpc", {"subnet_ids": [], "security_group_ids": ["sg-0123456789abcdef0"]},
         "databases[0].vpc.subnet_ids", "list 1 to 16 ids"),
        ("vpc", {"subnet_ids": ["subnet-0123456789abcdef0"] * 2, "security_group_ids": ["sg-0123456789abcdef0"]},
         "databases[0].vpc.subnet_ids", "list each id once"),
        ("vpc", {"subnet_ids": ["subnet-0123456789abcdef0"], "security_group_ids": ["default"]},
         "databases[0].vpc.security_group_ids[0]", "is not a security group id"),
        ("vpc", {"subnet_ids": ["subnet-0123456789abcdef0"]}, "databases[0].vpc.security_group_ids",
         "required field is missing"),
    ],
)  # fmt: skip
def test_database_deployment_fields_are_checked_at_their_path(
    field: str, value: object, path: str, message: str
) -> None:
    error = config_error(database_field(field, value))

    assert f"backstop.yaml:6: {path}: " in error
    assert message in error


def test_one_malformed_subnet_reports_only_itself() -> None:
    error = config_error(
        database_field("vpc", {"subnet_ids": ["subnet-1"], "security_group_ids": ["sg-0123456789abcdef0"]})
    )

    assert error.count("backstop.yaml:") == 1


def test_efs_needs_a_vpc() -> None:
    text = HEAD + SQLITE + "    efs:\n" + NETWORK.split("    efs:\n")[1]

    error = config_error(text)

    assert "databases[0].efs: a function mounts EFS only inside a VPC: add vpc" in error


def test_the_database_path_must_be_on_the_efs_mount() -> None:
    error = config_error((HEAD + SQLITE + NETWORK).replace("path: /mnt/data/orders.db", "path: /srv/orders.db"))

    assert "backstop.yaml:5: databases[0].path: '/srv/orders.db' is not under the EFS mount path '/mnt/data'" in error


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("mount_path: /mnt/data", "mount_path: /data", "'/data' is not a Lambda mount path"),
        ("mount_path: /mnt/data", "mount_path: /mnt/a/b", "is not a Lambda mount path"),
        ("fs-0123456789abcdef0", "fs-xyz", "'fs-xyz' is not an EFS file system id"),
        ("fsap-0123456789abcdef0", "fsap-123", "'fsap-123' is not an EFS access point id"),
    ],
)
def test_efs_ids_and_mount_path_are_checked(old: str, new: str, message: str) -> None:
    error = config_error((HEAD + SQLITE + NETWORK).replace(old, new))

    assert "databases[0].efs." in error
    assert message in error


def test_efs_belongs_to_file_databases_only() -> None:
    text = (
        HEAD + "databases:\n  - name: shop\n    engine: mysql\n    host: db.internal\n    dbname: shop\n    user: u\n"
        "    efs: {file_system_id: fs-0123456789abcdef0, access_point_id: fsap-0123456789abcdef0, mount_path: /mnt/x}\n"
    )

    assert "backstop.yaml:8: databases[0].efs: Extra inputs are not permitted" in config_error(text)


@pytest.mark.parametrize(
    ("field", "value", "path", "message"),
    [
        ("alerts", {"emails": ["oncall@example.com", "not-an-address"]}, "alerts.emails[1]", "is not an email address"),
        ("storage", {"cold_after_days": 0}, "storage.cold_after_days", "greater than or equal to 1"),
        ("storage", {"yearly_storage_class": "STANDARD"}, "storage.yearly_storage_class", "'GLACIER_IR'"),
        ("storage", {"object_lock": {"mode": "strict", "days": 7}}, "storage.object_lock.mode", "'governance'"),
        ("storage", {"object_lock": {"mode": "governance", "days": 0}}, "storage.object_lock.days", ">= 1"),
        ("storage", {"writers": ["ops"]}, "storage.writers[0]", "'ops' is not an IAM role ARN"),
        ("storage", {"writers": ["arn:aws:iam::123456789012:user/ops"]}, "storage.writers[0]", "not an IAM role ARN"),
        ("storage", {"replica": {"bucket": "r", "region": "eu-west-1"}}, "storage.replica.bucket", "not a valid S3"),
        ("storage", {"replica": {"bucket": "rep", "region": "Europe"}}, "storage.replica.region", "not an AWS region"),
        (
            "storage",
            {"replica": {"bucket": "rep", "region": "eu-west-1", "allowed_lag": "1m"}},
            "storage.replica.allowed_lag",
            "15m to 7d",
        ),
        (
            "storage",
            {"replica": {"bucket": "rep", "region": "eu-west-1", "account": "222222222222"}},
            "storage.replica",
            "set account and vault_account together",
        ),
        (
            "storage",
            {"replica": {"bucket": "rep", "region": "eu-west-1", "account": "2222", "vault_account": "111111111111"}},
            "storage.replica.account",
            "not a 12-digit AWS account id",
        ),
        (
            "storage",
            {"replica": {"bucket": "rep", "region": "eu-west-1", "administrators": ["admin"]}},
            "storage.replica.administrators[0]",
            "'admin' is not an IAM role ARN",
        ),
        ("stack_name", "1-backstop", "stack_name", "String should match pattern"),
        ("stack_name", "Backstop_Prod", "stack_name", "String should match pattern"),
        ("freshness", {"every": "3m"}, "freshness.every", "every 5m to 12h"),
        ("freshness", {"every": "13h"}, "freshness.every", "every 5m to 12h"),
        ("freshness", {"every": "5m30s"}, "freshness.every", "in whole minutes"),
        ("runner", {"architecture": "ppc64"}, "runner.architecture", "'x86_64' or 'arm64'"),
        ("runner", {"log_retention_days": 42}, "runner.log_retention_days", "Input should be 1, 3, 5"),
    ],
)
def test_top_level_deployment_fields_are_checked_at_their_path(
    field: str, value: object, path: str, message: str
) -> None:
    error = config_error(top_level(field, value))

    assert f"backstop.yaml:2: {path}: " in error
    assert message.replace(">= 1", "greater than or equal to 1") in error


def test_a_replica_must_be_another_bucket_than_the_vault() -> None:
    config = parse_config(top_level("storage", {"replica": {"bucket": "backstop-other", "region": "eu-west-1"}}))
    assert config.storage.replica is not None and not config.storage.replica.cross_account

    error = config_error(top_level("storage", {"replica": {"bucket": config.bucket, "region": "eu-west-1"}}))

    assert "storage.replica.bucket must be another bucket than the vault's own bucket" in error


# -- the schedule's input is the database, written back --------------------------------------------------


@given(st.integers(min_value=1, max_value=10 * 365 * 86400))
def test_a_formatted_duration_reads_back_as_the_same_duration(seconds: int) -> None:
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("duration", "text"),
    [
        (timedelta(hours=26), "26h"),
        (timedelta(days=2), "2d"),
        (timedelta(weeks=1), "1w"),
        (timedelta(seconds=90), "90s"),
    ],
)
def test_durations_are_written_in_the_files_notation(duration: timedelta, text: str) -> None:
    assert format_duration(duration) == text


def test_a_database_dumped_as_json_validates_again_as_the_functions_environment() -> None:
    config: Config = parse_config(HEAD + SQLITE + "    stale_after: 1d12h\n    busy_timeout: 90s\n" + NETWORK)
    (orders,) = config.databases

    dumped = orders.model_dump(mode="json", exclude_unset=True, exclude=set(DEPLOYMENT_FIELDS))
    environment = {"BACKSTOP_BUCKET": "backstop-prod", "BACKSTOP_DATABASE": json.dumps(dumped)}
    settings = DatabaseFunctionSettings.from_env(environment)

    assert dumped["stale_after"] == "36h"
    assert settings.database.stale_after == timedelta(hours=36)
    assert settings.config().database("orders") == settings.database
    assert not DEPLOYMENT_FIELDS & set(dumped)
