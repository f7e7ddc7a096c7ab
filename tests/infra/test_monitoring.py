"""Monitoring in the template: encrypted alerts topic, dead letters, failure alerts, freshness, alarms, dashboard."""

from __future__ import annotations

import json
from typing import Any

import pytest

from backstop.config import load_config
from backstop.events import FreshnessCheckEvent
from infra.schedules import SCHEDULED_TIME
from tests.infra import EXAMPLE_CONFIG, ROOT, Synthesized, listed

pytestmark = pytest.mark.xdist_group("infra")

TOPIC = "MonitoringTopic2EDA8B02"
KEY = "MonitoringKey61F0DC42"
DEAD_LETTERS = "MonitoringDeadLettersD99D287D"
FAILURE_ALERT = "MonitoringFailureAlertFCFEFEE1"
FRESHNESS = "MonitoringFreshnessE00DB499"
PUBLISHERS = ["cloudwatch.amazonaws.com", "events.amazonaws.com"]


def dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


# -- the topic and its key ----------------------------------------------------------------------


def test_alerts_topic_is_encrypted_with_its_own_rotating_customer_key(example: Synthesized) -> None:
    assert example.properties(TOPIC)["KmsMasterKeyId"] == {"Fn::GetAtt": [KEY, "Arn"]}
    assert example.properties(KEY)["EnableKeyRotation"] is True
    assert example.resources[KEY]["DeletionPolicy"] == "RetainExceptOnCreate"


def test_key_policy_lets_cloudwatch_and_eventbridge_use_the_key_to_publish(example: Synthesized) -> None:
    statements = example.properties(KEY)["KeyPolicy"]["Statement"]

    (services,) = [s for s in statements if "Service" in s["Principal"]]
    assert services["Effect"] == "Allow"
    assert services["Principal"] == {"Service": PUBLISHERS}
    assert services["Action"] == ["kms:GenerateDataKey*", "kms:Decrypt"]


def test_topic_policy_lets_this_accounts_alarms_and_rules_publish_over_tls_only(example: Synthesized) -> None:
    (policy,) = example.of_type("AWS::SNS::TopicPolicy").values()
    statements = policy["Properties"]["PolicyDocument"]["Statement"]

    assert {
        "Action": "sns:Publish",
        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        "Effect": "Allow",
        "Principal": {"Service": PUBLISHERS},
        "Resource": {"Ref": TOPIC},
        "Sid": "AllowAlarmsAndRulesOfThisAccountToPublish",
    } in statements
    (deny,) = [s for s in statements if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_every_configured_email_is_subscribed(example: Synthesized, servers: Synthesized) -> None:
    def emails(synthesized: Synthesized) -> list[str]:
        return sorted(
            s["Properties"]["Endpoint"]
            for s in synthesized.of_type("AWS::SNS::Subscription").values()
            if s["Properties"]["Protocol"] == "email" and s["Properties"]["TopicArn"] == {"Ref": TOPIC}
        )

    assert emails(example) == ["oncall@example.com"]
    assert emails(servers) == ["dba@example.com", "oncall@example.com"]


def test_every_function_that_publishes_may_use_the_topic_key_only_through_sns(example: Synthesized) -> None:
    for role_id in example.of_type("AWS::IAM::Role"):
        statements = example.statements_of_role(role_id)
        if not any(s["Action"] == "sns:Publish" for s in statements):
            continue
        (key,) = [s for s in statements if s["Resource"] == f"<{KEY}.Arn>" and "Condition" in s]
        assert key["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"], role_id
        assert key["Condition"] == {"StringEquals": {"kms:ViaService": "sns.<AWS::Region>.amazonaws.com"}}


# -- dead letters and failure alerts --------------------------------------------------------------


def test_dead_letter_queue_is_encrypted_with_the_alerts_key_and_tls_only(example: Synthesized) -> None:
    queue = example.properties(DEAD_LETTERS)
    (policy,) = example.of_type("AWS::SQS::QueuePolicy").values()

    assert queue["KmsMasterKeyId"] == {"Fn::GetAtt": [KEY, "Arn"]}
    assert queue["MessageRetentionPeriod"] == 14 * 86400
    (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})


def test_dead_letters_are_turned_into_alerts_one_message_at_a_time(example: Synthesized) -> None:
    (mapping,) = example.of_type("AWS::Lambda::EventSourceMapping").values()

    assert mapping["Properties"]["EventSourceArn"] == {"Fn::GetAtt": [DEAD_LETTERS, "Arn"]}
    assert FAILURE_ALERT in json.dumps(mapping["Properties"]["FunctionName"])
    assert mapping["Properties"]["BatchSize"] == 1


def test_failure_alert_function_only_publishes_and_reads_dead_letters(example: Synthesized) -> None:
    function = example.properties(FAILURE_ALERT)
    role_id = function["Role"]["Fn::GetAtt"][0]
    granted = {a for s in example.statements_of_role(role_id) for a in listed(s["Action"])}

    assert function["ImageConfig"] == {"Command": ["backstop.handlers.failure_alert.handler"]}
    assert function["Environment"]["Variables"] == {"BACKSTOP_ALERTS_TOPIC_ARN": {"Ref": TOPIC}}
    assert not any(a.startswith("s3:") for a in granted)
    assert granted == {
        "sns:Publish",
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "sqs:ReceiveMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueUrl",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }


def test_dead_letter_queue_outlasts_the_failure_alert_function(example: Synthesized) -> None:
    # Lambda refuses an SQS event source whose visibility timeout is shorter than the function's timeout.
    assert example.properties(DEAD_LETTERS)["VisibilityTimeout"] >= example.properties(FAILURE_ALERT)["Timeout"]


# -- freshness --------------------------------------------------------------------------------------


def freshness_schedule(synthesized: Synthesized) -> dict[str, Any]:
    _, resource = synthesized.one("AWS::Scheduler::Schedule", "MonitoringFreshnessSchedule")
    props: dict[str, Any] = resource["Properties"]
    return props


def test_freshness_check_runs_on_its_own_schedule_with_every_database(example: Synthesized) -> None:
    schedule = freshness_schedule(example)
    sent = json.loads(schedule["Target"]["Input"])

    assert schedule["ScheduleExpression"] == "rate(1 hour)"
    assert schedule["Target"]["Arn"] == {"Fn::GetAtt": [FRESHNESS, "Arn"]}
    assert schedule["Target"]["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [DEAD_LETTERS, "Arn"]}}
    assert sent == {
        "databases": [
            {"name": db.name, "stale_after": "26h", "drill_every": "1w"} for db in load_config(EXAMPLE_CONFIG).databases
        ],
        "checked_at": SCHEDULED_TIME,
    }


def test_freshness_schedule_sends_its_events_sample(example: Synthesized) -> None:
    sample = json.loads((ROOT / "events" / "freshness" / "scheduled.json").read_text(encoding="utf-8"))

    assert json.loads(freshness_schedule(example)["Target"]["Input"]) == {**sample, "checked_at": SCHEDULED_TIME}


def test_freshness_input_is_what_the_freshness_handler_parses(servers: Synthesized) -> None:
    text = freshness_schedule(servers)["Target"]["Input"].replace(SCHEDULED_TIME, "2026-11-21T08:00:00Z")

    event = FreshnessCheckEvent.model_validate_json(text)

    assert [(db.name, db.stale_after.total_seconds()) for db in event.databases] == [
        ("billing", 2 * 86400),
        ("shop", 26 * 3600),
    ]
    assert freshness_schedule(servers)["ScheduleExpression"] == "rate(30 minutes)"


def test_freshness_role_only_lists_and_reads_manifests_and_drill_records(example: Synthesized) -> None:
    role_id = example.properties(FRESHNESS)["Role"]["Fn::GetAtt"][0]
    s3 = [s for s in example.statements_of_role(role_id) if "s3:" in json.dumps(s["Action"])]
    bucket = "<VaultBucket0925C477.Arn>"
    readable = [f"{bucket}/backups/{db}/*.manifest.json" for db in ("orders", "uploads")] + [
        f"{bucket}/backups/_drills/{db}.last-success.json" for db in ("orders", "uploads")
    ]

    assert [(s["Action"], s["Resource"]) for s in s3] == [("s3:GetObject", readable), ("s3:ListBucket", bucket)]
    (decrypt,) = [s for s in example.statements_of_role(role_id) if s["Resource"] == "<VaultKeyCB88EF1A.Arn>"]
    assert decrypt["Action"] == "kms:Decrypt"


# -- alarms -------------------------------------------------------------------------------------------


def test_every_alarm_publishes_to_the_alerts_topic(example: Synthesized) -> None:
    assert all(alarm["AlarmActions"] == [{"Ref": TOPIC}] for alarm in example.alarms().values())


def test_alarms_cover_staleness_size_anomalies_and_the_alerting_path(example: Synthesized) -> None:
    assert sorted(example.alarms()) == [
        "approval-errors",
        "dead-letters-unprocessed",
        "failure-alert-errors",
        "freshness-errors",
        "guard-errors",
        "guard-not-running",
        "orders-backup-errors",
        "orders-backup-size-anomaly",
        "orders-backup-stale",
        "orders-drill-errors",
        "orders-drill-failed",
        "orders-drill-overdue",
        "restore-errors",
        "sweep-errors",
        "sweep-mismatch",
        "sweep-not-running",
        "sweep-overwritten",
        "sweep-unreadable",
        "uploads-backup-errors",
        "uploads-backup-size-anomaly",
        "uploads-backup-stale",
        "uploads-drill-errors",
        "uploads-drill-failed",
        "uploads-drill-overdue",
    ]


def test_every_function_has_an_errors_alarm_on_its_own_errors(example: Synthesized) -> None:
    functions = set(example.of_type("AWS::Lambda::Function"))
    watched = {
        dimensions(alarm)["FunctionName"]["Fn::Select"][1]["Fn::Split"][1]["Fn::GetAtt"][0]
        for name, alarm in example.alarms().items()
        if name.endswith("-errors") and alarm["MetricName"] == "Errors"
    }

    assert watched == functions
    for name, alarm in example.alarms().items():
        if name.endswith("-errors"):
            assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"]) == ("AWS/Lambda", "Sum", 1), name


@pytest.mark.parametrize("database", ["orders", "uploads"])
def test_stale_alarm_fires_past_stale_after_and_when_the_check_goes_silent(example: Synthesized, database: str) -> None:
    alarm = example.alarms()[f"{database}-backup-stale"]

    assert (alarm["Namespace"], alarm["MetricName"]) == ("Backstop", "NewestBackupAgeSeconds")
    assert dimensions(alarm) == {"database": database, "service": "freshness"}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 26 * 3600)
    assert alarm["TreatMissingData"] == "breaching"  # no data: no backup at all, or no check
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("Maximum", 7200, 1)


def test_guard_not_running_alarm_fires_when_a_day_passes_without_a_guard_run(example: Synthesized) -> None:
    alarm = example.alarms()["guard-not-running"]

    assert (alarm["Namespace"], alarm["MetricName"]) == ("Backstop", "HeldBackups")
    assert dimensions(alarm) == {"service": "guard"}  # the whole run's count, emitted even when nothing is held
    assert (alarm["Statistic"], alarm["Period"], alarm["EvaluationPeriods"]) == ("SampleCount", 86400, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("LessThanThreshold", 1)
    assert alarm["TreatMissingData"] == "breaching"  # silence is the failure this alarm exists for


def test_stale_alarm_window_follows_the_check_interval(servers: Synthesized) -> None:
    alarm = servers.alarms()["billing-backup-stale"]

    assert (alarm["Period"], alarm["Threshold"]) == (3600, 2 * 86400)  # checks every 30m; 2d stale_after


@pytest.mark.parametrize("database", ["orders", "uploads"])
def test_size_anomaly_alarm_fires_on_one_flagged_backup(example: Synthesized, database: str) -> None:
    alarm = example.alarms()[f"{database}-backup-size-anomaly"]

    assert (alarm["Namespace"], alarm["MetricName"]) == ("Backstop", "BackupSizeAnomaly")
    assert dimensions(alarm) == {"database": database, "service": "backup"}
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["TreatMissingData"] == "notBreaching"


@pytest.mark.parametrize(
    ("name", "function"), [("failure-alert-errors", FAILURE_ALERT), ("freshness-errors", FRESHNESS)]
)
def test_errors_of_the_alerting_functions_raise_an_alarm(example: Synthesized, name: str, function: str) -> None:
    alarm = example.alarms()[name]

    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == ("AWS/Lambda", "Errors", 1)
    assert function in json.dumps(dimensions(alarm)["FunctionName"])


def test_dead_letters_left_unprocessed_for_an_hour_raise_an_alarm(example: Synthesized) -> None:
    alarm = example.alarms()["dead-letters-unprocessed"]

    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        3600,
    )
    assert dimensions(alarm) == {"QueueName": {"Fn::GetAtt": [DEAD_LETTERS, "QueueName"]}}


# -- dashboard --------------------------------------------------------------------------------------------


def dashboard_body(synthesized: Synthesized) -> str:
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    return json.dumps(dashboard["Properties"]["DashboardBody"])


def test_dashboard_shows_every_database_and_the_alerting_path(example: Synthesized) -> None:
    body = dashboard_body(example)

    for database in ("orders", "uploads"):
        for title in ("newest backup age", "stored bytes per backup", "backup duration", "function errors"):
            assert f"{database}: {title}" in body
    for metric in ("NewestBackupAgeSeconds", "BackupBytes", "BackupDuration", "BackupCommitted", "StaleDatabases"):
        assert metric in body
    assert "BackupFailureAlerts" in body
    assert "ApproximateNumberOfMessagesVisible" in body
    assert "Backstop alarms" in body
