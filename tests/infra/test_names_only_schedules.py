"""Schedules send names and times; each function gets its configuration from its own deployment.

A schedule's input can be edited, and anyone allowed to invoke a function can send it any event, so
neither may carry what the function trusts: the database's host, path or secret. Those are in the
function's environment, which only a deployment sets.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import TypeAdapter

from backstop.config import DEPLOYMENT_FIELDS, Database, MysqlDatabase, PostgresDatabase, load_config, parse_config
from backstop.config.catalog import digest
from backstop.config.environment import DatabaseFunctionSettings
from infra.scheduled_backups import deployment_problems
from infra.schedules import SCHEDULED_TIME
from tests.infra import EXAMPLE_CONFIG, SERVERS_CONFIG, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

EXAMPLE = ("orders", "uploads")
SERVERS = ("billing", "shop")
DATABASE = TypeAdapter(Database)


def schedule_input(synthesized: Synthesized, described: str) -> dict[str, Any]:
    sent: dict[str, Any] = json.loads(synthesized.schedule(described)["Target"]["Input"])
    return sent


@pytest.mark.parametrize(
    ("synthesized", "database"),
    [("example", db) for db in EXAMPLE] + [("servers", db) for db in SERVERS],
    indirect=["synthesized"],
)
def test_a_backup_schedule_sends_only_the_database_name_and_the_scheduled_time(
    synthesized: Synthesized, database: str
) -> None:
    # given the synthesized stack, when the input of the database's backup schedule is read
    sent = schedule_input(synthesized, f"backs up {database}")

    # then it names the database and Scheduler's time, and nothing else
    assert sent == {"database": {"name": database}, "scheduled_time": SCHEDULED_TIME}


@pytest.mark.parametrize("database", EXAMPLE)
def test_a_drill_schedule_sends_only_the_database_name_and_the_scheduled_time(
    example: Synthesized, database: str
) -> None:
    sent = schedule_input(example, f"restore drill of {database}")

    assert sent == {"database": {"name": database}, "scheduled_time": SCHEDULED_TIME}


def test_the_sweep_schedule_sends_only_its_time(example: Synthesized) -> None:
    sent = schedule_input(example, "verification sweep")

    assert sent == {"checked_at": SCHEDULED_TIME}


@pytest.mark.parametrize("database", EXAMPLE)
def test_a_backup_function_has_its_databases_configuration_in_its_environment(
    example: Synthesized, database: str
) -> None:
    # given the configuration the stack was built from
    configured = load_config(EXAMPLE_CONFIG).database(database)

    # when the backup function's environment is read
    variables = example.environment(f"Backups{database}Function")

    # then it holds that database's configuration (what a backup needs), and the vault's settings
    deployed = variables["BACKSTOP_DATABASE"]
    written = configured.model_dump(mode="json", exclude_unset=True, exclude=set(DEPLOYMENT_FIELDS))
    assert json.loads(deployed) == written
    assert DATABASE.validate_json(deployed).name == database
    assert {"BACKSTOP_BUCKET", "BACKSTOP_PREFIX", "BACKSTOP_KMS_KEY_ID", "BACKSTOP_ALERTS_TOPIC_ARN"} < set(variables)


@pytest.mark.parametrize("database", SERVERS)
def test_a_server_databases_function_has_the_secret_arn_never_a_password(servers: Synthesized, database: str) -> None:
    configured = parse_config(SERVERS_CONFIG).database(database)
    assert isinstance(configured, PostgresDatabase | MysqlDatabase)

    deployed = json.loads(servers.environment(f"Backups{database}Function")["BACKSTOP_DATABASE"])

    assert (deployed["host"], deployed["password_secret"]) == (configured.host, configured.password_secret)
    assert not {"password", "password_env"} & set(deployed)


def test_a_drill_function_knows_its_databases_restore_targets(example: Synthesized) -> None:
    # the run refuses to drill into a restore target, so its function must know them
    deployed = json.loads(example.environment("VerificationDrillordersFunction")["BACKSTOP_DATABASE"])

    assert deployed["name"] == "orders" and deployed["path"] == "/mnt/data/orders.db"
    assert set(deployed["restore_targets"]) == {"staging", "in-place"}
    assert not {"function", "vpc", "efs"} & set(deployed)


def test_the_sweep_function_has_the_databases_catalog_and_the_budget_in_its_environment(example: Synthesized) -> None:
    variables = example.environment("VerificationSweep")

    assert sorted(example.catalog_databases()) == sorted(EXAMPLE)
    assert variables["BACKSTOP_CATALOG"] == "/backstop/Backstop/databases"
    assert variables["BACKSTOP_CATALOG_DIGEST"] == digest(example.catalog())
    assert int(variables["BACKSTOP_BUDGET"]) == 10 * 1024**3


def test_a_configuration_too_big_for_a_functions_environment_cannot_be_deployed() -> None:
    # given a database whose validation queries alone take 4 KB
    queries = "".join(f"\n      - SELECT count(*) FROM table_number_{i:04d}_with_a_long_name" for i in range(80))
    config = parse_config(
        "bucket: backstop-big\ndatabases:\n  - name: big\n    engine: postgres\n    host: db.internal\n"
        f"    dbname: big\n    user: backstop\n    validation_queries:{queries}\n"
    )

    # when it is checked for deployment
    problems = deployment_problems(config)

    # then one sentence says its configuration does not fit a function's environment
    [problem] = problems
    assert problem.startswith("databases[0] (big): its configuration is") and "validation_queries" in problem


def test_a_backup_function_writes_with_the_vaults_object_lock(servers: Synthesized, example: Synthesized) -> None:
    # the servers' vault locks in compliance mode: each backup function is told, the settings build it
    variables = servers.environment("BackupsbillingFunction")
    settings = DatabaseFunctionSettings.from_env(
        {
            **variables,
            "BACKSTOP_BUCKET": "backstop-servers",
            "BACKSTOP_KMS_KEY_ID": "k",
            "BACKSTOP_ALERTS_TOPIC_ARN": "t",
        }
    )
    lock = settings.config().storage.object_lock
    assert lock is not None and lock.mode == "compliance"
    # without Object Lock there is nothing to say
    assert "BACKSTOP_OBJECT_LOCK" not in example.environment("BackupsordersFunction")
