"""Scheduled backups in the template: one schedule and one function per database, each with only its own access."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App

from backstop.config import load_config, parse_config
from backstop.events import ScheduledBackupEvent
from infra.scheduled_backups import DeploymentConfigError, deployment_problems
from infra.schedules import SCHEDULED_TIME
from infra.stack import BackstopStack
from tests.infra import EXAMPLE_CONFIG, ROOT, SERVERS_CONFIG, Synthesized, listed

pytestmark = pytest.mark.xdist_group("infra")

SAMPLES = ROOT / "events" / "backup"
DEAD_LETTERS = "MonitoringDeadLettersD99D287D"
FAILURE_ALERT = "MonitoringFailureAlertFCFEFEE1"
VAULT_BUCKET = "<VaultBucket0925C477.Arn>"
EXAMPLE = ("orders", "uploads")
SERVERS = ("billing", "shop")


def schedule(synthesized: Synthesized, database: str) -> dict[str, Any]:
    _, resource = synthesized.one("AWS::Scheduler::Schedule", f"Backups{database}Schedule")
    properties: dict[str, Any] = resource["Properties"]
    return properties


def function(synthesized: Synthesized, database: str) -> tuple[str, dict[str, Any]]:
    logical_id, resource = synthesized.one("AWS::Lambda::Function", f"Backups{database}Function")
    return logical_id, resource["Properties"]


def backup_statements(synthesized: Synthesized, database: str) -> list[dict[str, Any]]:
    return synthesized.role_statements(f"Backups{database}Role")  # not ...ScheduleRole


def sample(database: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SAMPLES / f"scheduled-{database}.json").read_text(encoding="utf-8"))
    return document


# -- schedules ----------------------------------------------------------------------------------


def test_every_database_has_one_backup_schedule_and_one_drill_schedule_plus_freshness_sweep_and_guard(
    example: Synthesized, servers: Synthesized
) -> None:
    # the example's two file databases drill by default; the servers' databases have no scratch server
    assert len(example.of_type("AWS::Scheduler::Schedule")) == 2 * len(EXAMPLE) + 3
    assert len(servers.of_type("AWS::Scheduler::Schedule")) == len(SERVERS) + 3


@pytest.mark.parametrize("database", EXAMPLE)
def test_each_schedule_sends_exactly_its_events_sample(example: Synthesized, database: str) -> None:
    expected = {**sample(database), "scheduled_time": SCHEDULED_TIME}

    assert json.loads(schedule(example, database)["Target"]["Input"]) == expected


def test_every_sample_has_its_schedule_in_the_example() -> None:
    names = {path.name.removeprefix("scheduled-").removesuffix(".json") for path in SAMPLES.glob("scheduled-*.json")}

    assert names == {db.name for db in load_config(EXAMPLE_CONFIG).databases}


@pytest.mark.parametrize(
    ("synthesized", "database"),
    [("example", db) for db in EXAMPLE] + [("servers", db) for db in SERVERS],
    indirect=["synthesized"],
)
def test_schedule_inputs_are_what_the_backup_handler_parses(synthesized: Synthesized, database: str) -> None:
    text = schedule(synthesized, database)["Target"]["Input"].replace(SCHEDULED_TIME, "2026-11-21T02:00:00Z")

    event = ScheduledBackupEvent.for_database(json.loads(text), database)  # what the backup handler does

    assert event.database.name == database


@pytest.mark.parametrize("database", SERVERS)
def test_server_functions_carry_the_secret_arn_and_no_deployment_settings(servers: Synthesized, database: str) -> None:
    deployed = json.loads(servers.environment(f"Backups{database}Function")["BACKSTOP_DATABASE"])

    assert deployed["password_secret"].startswith("arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/")
    assert not {"password", "password_env", "function", "vpc", "efs"} & set(deployed)


def test_schedules_keep_their_expression_and_time_zone(example: Synthesized, servers: Synthesized) -> None:
    assert schedule(example, "orders")["ScheduleExpression"] == "cron(0 2 * * ? *)"
    assert schedule(example, "orders")["ScheduleExpressionTimezone"] == "UTC"
    assert schedule(example, "uploads")["ScheduleExpression"] == "cron(30 2 * * ? *)"
    assert schedule(servers, "billing")["ScheduleExpressionTimezone"] == "Europe/Paris"
    assert schedule(servers, "shop")["ScheduleExpression"] == "rate(6 hours)"


@pytest.mark.parametrize("database", EXAMPLE)
def test_schedules_retry_then_dead_letter_undeliverable_invocations(example: Synthesized, database: str) -> None:
    properties = schedule(example, database)

    assert properties["State"] == "ENABLED"
    assert properties["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert properties["Target"]["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 10}
    assert properties["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [DEAD_LETTERS, "Arn"]}}
    function_id, _ = function(example, database)
    assert properties["Target"]["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}


@pytest.mark.parametrize("database", EXAMPLE)
def test_schedule_role_may_only_invoke_its_function_and_dead_letter(example: Synthesized, database: str) -> None:
    role_id = schedule(example, database)["Target"]["RoleArn"]["Fn::GetAtt"][0]
    function_id, _ = function(example, database)
    trust = example.resources[role_id]["Properties"]["AssumeRolePolicyDocument"]["Statement"]

    assert [(s["Principal"], s["Condition"]["StringEquals"]["aws:SourceAccount"]) for s in trust] == [
        ({"Service": "scheduler.amazonaws.com"}, {"Ref": "AWS::AccountId"})
    ]
    assert [(s["Action"], s["Resource"]) for s in example.statements_of_role(role_id)] == [
        ("lambda:InvokeFunction", f"<{function_id}.Arn>"),
        ("sqs:SendMessage", f"<{DEAD_LETTERS}.Arn>"),
        (["kms:GenerateDataKey", "kms:Decrypt"], "<MonitoringKey61F0DC42.Arn>"),  # the queue's key
    ]


# -- functions ----------------------------------------------------------------------------------


def test_functions_take_memory_time_and_storage_from_the_configuration(
    example: Synthesized, servers: Synthesized
) -> None:
    def limits(synthesized: Synthesized, database: str) -> tuple[int, int, int]:
        _, properties = function(synthesized, database)
        return properties["MemorySize"], properties["Timeout"], properties["EphemeralStorage"]["Size"]

    assert limits(example, "orders") == (2048, 900, 2048)  # the defaults
    assert limits(example, "uploads") == (3008, 900, 8192)
    assert limits(servers, "billing") == (2048, 600, 2048)


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_functions_run_the_backup_handler_with_the_vault_settings(example: Synthesized, database: str) -> None:
    _, properties = function(example, database)

    assert properties["ImageConfig"] == {"Command": ["backstop.handlers.backup.handler"]}
    variables = dict(properties["Environment"]["Variables"])
    assert json.loads(variables.pop("BACKSTOP_DATABASE"))["name"] == database  # test_names_only_schedules
    assert variables == {
        "BACKSTOP_BUCKET": {"Ref": "VaultBucket0925C477"},
        "BACKSTOP_PREFIX": "backups",
        "BACKSTOP_KMS_KEY_ID": {"Fn::GetAtt": ["VaultKeyCB88EF1A", "Arn"]},
        "BACKSTOP_ALERTS_TOPIC_ARN": {"Ref": "MonitoringTopic2EDA8B02"},
    }


def test_functions_join_the_configured_vpc_and_mount_the_efs_access_point(example: Synthesized) -> None:
    _, properties = function(example, "orders")

    assert properties["VpcConfig"] == {
        "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"],
        "SecurityGroupIds": ["sg-0123456789abcdef0"],
    }
    (mount,) = properties["FileSystemConfigs"]
    assert mount["LocalMountPath"] == "/mnt/data"
    assert mount["Arn"]["Fn::Join"][1][-1] == ":access-point/fsap-0123456789abcdef0"


def test_a_database_outside_any_vpc_gets_a_function_outside_any_vpc(servers: Synthesized) -> None:
    _, properties = function(servers, "shop")

    assert "VpcConfig" not in properties
    assert "FileSystemConfigs" not in properties
    assert not [s for s in backup_statements(servers, "shop") if "ec2" in str(s["Action"])]


@pytest.mark.parametrize("database", EXAMPLE)
def test_functions_are_created_after_the_policy_their_configuration_needs(example: Synthesized, database: str) -> None:
    function_id, _ = function(example, database)
    policy_id, _ = example.one("AWS::IAM::Policy", f"Backups{database}RoleDefaultPolicy")
    tracing_id, _ = example.one("AWS::IAM::ManagedPolicy", "RunnerTracing")

    assert example.resources[function_id]["DependsOn"] == [policy_id, tracing_id]


@pytest.mark.parametrize("database", EXAMPLE)
def test_a_failed_backup_is_retried_twice_then_handed_to_the_failure_alert_function(
    example: Synthesized, database: str
) -> None:
    function_id, _ = function(example, database)
    _, config = example.one("AWS::Lambda::EventInvokeConfig", f"Backups{database}AsyncInvoke")

    properties = dict(config["Properties"])
    assert function_id in json.dumps(properties.pop("FunctionName"))  # the name, from the function's ARN
    assert properties == {
        "Qualifier": "$LATEST",
        "MaximumRetryAttempts": 2,
        "MaximumEventAgeInSeconds": 21600,
        "DestinationConfig": {"OnFailure": {"Destination": {"Fn::GetAtt": [FAILURE_ALERT, "Arn"]}}},
    }


# -- least privilege ----------------------------------------------------------------------------


def s3_statements(synthesized: Synthesized, database: str) -> list[dict[str, Any]]:
    return [
        s for s in backup_statements(synthesized, database) if any(a.startswith("s3:") for a in listed(s["Action"]))
    ]


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_role_has_no_wildcard_action(example: Synthesized, database: str) -> None:
    statements = backup_statements(example, database)

    assert all("*" not in action for s in statements for action in listed(s["Action"]))


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_role_reaches_only_its_own_keys_lock_and_failure_records(example: Synthesized, database: str) -> None:
    objects = {
        resource
        for s in s3_statements(example, database)
        for resource in listed(s["Resource"])
        if resource != VAULT_BUCKET  # the bucket itself: ListBucket, checked below
    }

    assert objects == {
        f"{VAULT_BUCKET}/backups/{database}/*",
        f"{VAULT_BUCKET}/backups/_locks/{database}.backup.json",
        f"{VAULT_BUCKET}/backups/_failures/{database}/*",
    }


@pytest.mark.parametrize(("database", "other"), [("orders", "uploads"), ("uploads", "orders")])
def test_backup_role_names_no_other_database(example: Synthesized, database: str, other: str) -> None:
    assert other not in json.dumps(backup_statements(example, database))


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_role_lists_only_its_own_prefix(example: Synthesized, database: str) -> None:
    (listing,) = [s for s in s3_statements(example, database) if "s3:ListBucket" in listed(s["Action"])]

    assert listing["Resource"] == VAULT_BUCKET
    assert listing["Condition"] == {
        "StringLikeIfExists": {"s3:prefix": [f"backups/{database}/", f"backups/{database}/*"]}
    }


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_role_deletes_nothing_but_its_run_lock_and_never_reads_acls_or_policies(
    example: Synthesized, database: str
) -> None:
    granted = {action for s in s3_statements(example, database) for action in listed(s["Action"])}

    # no DeleteObjectVersion: an upload that fails its checks or loses the race is left to lifecycle
    assert granted == {
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:PutObject",
        "s3:PutObjectTagging",
        "s3:AbortMultipartUpload",
        "s3:DeleteObject",
        "s3:ListBucket",
    }
    (deletes,) = [s for s in s3_statements(example, database) if "s3:DeleteObject" in listed(s["Action"])]
    assert deletes["Resource"] == f"{VAULT_BUCKET}/backups/_locks/{database}.backup.json"  # only its run lock


@pytest.mark.parametrize("database", EXAMPLE)
def test_backup_role_uses_the_vault_key_only_through_s3_for_this_bucket(example: Synthesized, database: str) -> None:
    (key,) = [s for s in backup_statements(example, database) if s["Resource"] == "<VaultKeyCB88EF1A.Arn>"]

    assert key["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
    assert key["Condition"] == {
        "StringEquals": {"kms:ViaService": "s3.<AWS::Region>.amazonaws.com"},
        "StringLike": {"kms:EncryptionContext:aws:s3:arn": [VAULT_BUCKET, f"{VAULT_BUCKET}/*"]},
    }


@pytest.mark.parametrize(("database", "secret"), [("billing", "billing-AbCdEf"), ("shop", "shop-XyZ123")])
def test_backup_role_reads_exactly_its_own_secret(servers: Synthesized, database: str, secret: str) -> None:
    granted = [s for s in backup_statements(servers, database) if "secretsmanager" in str(s)]

    assert granted == [
        {
            "Action": "secretsmanager:GetSecretValue",
            "Effect": "Allow",
            "Resource": f"arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/{secret}",
            "Sid": "ReadOwnPasswordSecret",
        }
    ]


def test_roles_without_a_server_database_read_no_secret(example: Synthesized) -> None:
    assert "secretsmanager" not in json.dumps(example.of_type("AWS::IAM::Policy"))


@pytest.mark.parametrize(
    ("database", "granted"),
    [
        ("orders", ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]),  # WAL: SQLite writes -shm
        ("uploads", "elasticfilesystem:ClientMount"),  # a directory is only read
    ],
)
def test_efs_mount_is_allowed_only_through_the_configured_access_point(
    example: Synthesized, database: str, granted: str | list[str]
) -> None:
    (mount,) = [s for s in backup_statements(example, database) if "elasticfilesystem" in str(s)]

    assert mount["Action"] == granted  # never ClientRootAccess
    assert mount["Resource"].endswith(":file-system/fs-0123456789abcdef0")
    assert mount["Condition"]["StringEquals"]["elasticfilesystem:AccessPointArn"].endswith(
        ":access-point/fsap-0123456789abcdef0"
    )


def test_backup_roles_may_invoke_only_the_failure_alert_function(example: Synthesized) -> None:
    for database in EXAMPLE:
        invokes = [s for s in backup_statements(example, database) if s["Action"] == "lambda:InvokeFunction"]
        assert [s["Resource"] for s in invokes] == [f"<{FAILURE_ALERT}.Arn>"]


# -- what a deployed function cannot back up ------------------------------------------------------


def test_a_file_database_without_efs_cannot_be_deployed() -> None:
    config = parse_config("bucket: b-test\ndatabases:\n  - {name: ledger, engine: sqlite, path: /data/ledger.db}\n")

    (problem,) = deployment_problems(config)

    assert problem.startswith("databases[0] (ledger): a sqlite database is read from /data/ledger.db")
    with pytest.raises(DeploymentConfigError, match=r"cannot be deployed: databases\[0\] \(ledger\)"):
        BackstopStack(App(), "Test", config=config)


def test_a_password_from_the_environment_cannot_be_deployed() -> None:
    config = parse_config(
        "bucket: b-test\ndatabases:\n"
        "  - {name: shop, engine: mysql, host: db.internal, dbname: shop, user: u, password_env: SHOP_PASSWORD}\n"
    )

    assert deployment_problems(config) == [
        "databases[0] (shop): password_env names a variable the deployed function does not have: "
        "use password_secret (a Secrets Manager ARN) instead"
    ]


def test_the_example_and_the_servers_configuration_are_deployable(tmp_path: Path) -> None:
    servers = tmp_path / "servers.yaml"
    servers.write_text(SERVERS_CONFIG, encoding="utf-8")

    assert deployment_problems(load_config(EXAMPLE_CONFIG)) == []
    assert deployment_problems(load_config(servers)) == []
