"""Drills and the sweep in the synthesized stack: their schedules, their read-only IAM, their alarms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Annotations, Match

from backstop.events import ScheduledDrillEvent
from backstop.sweep_events import SweepEvent
from infra.schedules import SCHEDULED_TIME
from tests.infra import EXAMPLE_CONFIG, Synthesized, listed, synthesize_text

pytestmark = pytest.mark.xdist_group("infra")

BUCKET = "<VaultBucket0925C477.Arn>"


def s3_grants(statements: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every S3 action the role has, with the resources it has it on."""
    grants: dict[str, list[str]] = {}
    for statement in statements:
        for action in listed(statement["Action"]):
            if action.startswith("s3:"):
                grants.setdefault(action, []).extend(listed(statement["Resource"]))
    return grants


@pytest.mark.parametrize("database", ["orders", "uploads"])
def test_each_file_database_drills_weekly_with_an_input_its_handler_parses(example: Synthesized, database: str) -> None:
    found = example.schedule(f"restore drill of {database}")

    assert found["ScheduleExpression"] == "rate(7 days)"
    sent = json.loads(found["Target"]["Input"].replace(SCHEDULED_TIME, "2026-11-22T03:00:00Z"))
    event = ScheduledDrillEvent.for_database(sent, database)  # what the drill handler parses
    assert event.database.name == database  # the configuration is the function's: test_names_only_schedules


def test_the_sweep_runs_daily_with_an_input_its_handler_parses(example: Synthesized) -> None:
    found = example.schedule("verification sweep")

    assert found["ScheduleExpression"] == "rate(1 day)"
    event = SweepEvent.parse(json.loads(found["Target"]["Input"].replace(SCHEDULED_TIME, "2026-11-22T03:00:00Z")))
    assert event.checked_at is not None


def test_server_databases_without_a_scratch_server_have_no_drill(servers: Synthesized) -> None:
    descriptions = [r["Properties"]["Description"] for r in servers.of_type("AWS::Scheduler::Schedule").values()]

    assert not [d for d in descriptions if "restore drill" in d]


def test_a_drill_role_reads_its_database_and_writes_only_its_drill_records(example: Synthesized) -> None:
    grants = s3_grants(example.role_statements("VerificationDrillordersRole"))

    assert sorted(grants) == [
        "s3:GetObject",
        "s3:GetObjectVersion",
        "s3:ListBucket",
        "s3:PutObject",
        "s3:PutObjectTagging",
    ]
    assert grants["s3:GetObject"] == [f"{BUCKET}/backups/orders/*"]
    assert sorted(grants["s3:PutObject"]) == [
        f"{BUCKET}/backups/_drills/orders.last-success.json",
        f"{BUCKET}/backups/orders/*.drill.json",
    ]
    assert "s3:DeleteObject" not in grants and "s3:DeleteObjectVersion" not in grants


def test_the_sweep_role_reads_every_database_and_writes_only_sweep_records(example: Synthesized) -> None:
    grants = s3_grants(example.role_statements("VerificationSweepRole"))

    assert sorted(grants["s3:GetObject"]) == [f"{BUCKET}/backups/orders/*", f"{BUCKET}/backups/uploads/*"]
    assert sorted(grants["s3:PutObject"]) == [
        f"{BUCKET}/backups/orders/*.sweep.json",
        f"{BUCKET}/backups/uploads/*.sweep.json",
    ]
    assert not [a for a in grants if "Delete" in a]


def test_drill_functions_run_where_their_database_is(example: Synthesized) -> None:
    props = example.one("AWS::Lambda::Function", "VerificationDrillordersFunction")[1]["Properties"]

    assert props["ImageConfig"]["Command"] == ["backstop.handlers.drill.handler"]
    # restoring into /tmp it reads S3 only: outside any VPC, it needs no endpoint or NAT there
    assert "VpcConfig" not in props and "FileSystemConfigs" not in props
    assert props["EphemeralStorage"] == {"Size": 10240}  # the default scratch space is /tmp
    assert props["Timeout"] == 900


def test_a_drill_whose_scratch_is_on_efs_runs_in_the_databases_vpc(tmp_path: Path) -> None:
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8").replace(
        "    compression: zstd\n", "    compression: zstd\n    drill: {path: /mnt/data/drills}\n", 1
    )
    synthesized = synthesize_text(text, tmp_path)
    props = synthesized.one("AWS::Lambda::Function", "VerificationDrillordersFunction")[1]["Properties"]

    assert props["VpcConfig"]["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert props["FileSystemConfigs"][0]["LocalMountPath"] == "/mnt/data"


def test_alarms_watch_failed_slow_and_overdue_drills_and_sweep_findings(example: Synthesized) -> None:
    names = {
        r["Properties"]["AlarmName"]: r["Properties"]
        for r in example.of_type("AWS::CloudWatch::Alarm").values()
        if "drill" in r["Properties"]["AlarmName"] or "sweep" in r["Properties"]["AlarmName"]
    }

    assert sorted(n.removeprefix("Backstop-") for n in names) == [
        "orders-drill-errors",
        "orders-drill-failed",
        "orders-drill-overdue",
        "sweep-errors",
        "sweep-mismatch",
        "sweep-not-running",
        "sweep-overwritten",
        "sweep-unreadable",
        "uploads-drill-errors",
        "uploads-drill-failed",
        "uploads-drill-overdue",
    ]
    overdue = names["Backstop-orders-drill-overdue"]
    assert (overdue["MetricName"], overdue["Threshold"]) == ("LastSuccessfulDrillAgeSeconds", 2 * 7 * 86400)
    assert overdue["TreatMissingData"] == "breaching"  # measured at every freshness check: silence is a failure
    silent = names["Backstop-sweep-not-running"]
    assert (silent["MetricName"], silent["Statistic"], silent["Period"]) == (
        "SweepBackupsChecked",
        "SampleCount",
        2 * 86400,
    )
    assert (silent["ComparisonOperator"], silent["Threshold"], silent["TreatMissingData"]) == (
        "LessThanThreshold",
        1,
        "breaching",
    )


def test_a_sweep_too_rare_for_an_alarm_window_gets_no_not_running_alarm(tmp_path: Path) -> None:
    # CloudWatch evaluates at most seven days: a sweep every 4 days cannot be watched by its silence
    synthesized = synthesize_text(EXAMPLE_CONFIG.read_text(encoding="utf-8") + "sweep:\n  every: 4d\n", tmp_path)
    names = [r["Properties"]["AlarmName"] for r in synthesized.of_type("AWS::CloudWatch::Alarm").values()]

    assert "Backstop-sweep-errors" in names
    assert "Backstop-sweep-not-running" not in names


def test_the_dashboard_shows_drills_their_age_and_the_sweep(example: Synthesized) -> None:
    (dashboard,) = example.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dashboard["Properties"]["DashboardBody"])

    for database in ("orders", "uploads"):
        assert f"{database}: restore drill duration (s) and success" in body
        assert f"{database}: age of the last successful drill (s)" in body
    assert "Verification sweep: bytes re-read and mismatches" in body
    assert "MonitoringordersDrillFailed" in body  # the drill alarms are in the status widget (by logical id)


def test_sweep_repair_is_for_the_command_and_synth_says_so(tmp_path: Path) -> None:
    # given a configuration whose operators want `backstop sweep` to repair what it finds overwritten
    text = EXAMPLE_CONFIG.read_text(encoding="utf-8") + "sweep:\n  repair: true\n"

    # when it is synthesized
    synthesized = synthesize_text(text, tmp_path)

    # then synth warns that the deployed sweep does not repair, and its role still may not delete
    warnings = Annotations.from_stack(synthesized.stack).find_warning(
        "*", Match.string_like_regexp("sweep.repair applies to `backstop sweep`")
    )
    assert [w.id for w in warnings] == ["/Backstop/Verification/SweepHandle"]
    grants = s3_grants(synthesized.role_statements("VerificationSweepRole"))
    assert not {a for a in grants if "Delete" in a or a.endswith("Retention")}
    assert all(r.endswith("*.sweep.json") for r in grants["s3:PutObjectTagging"])  # its own records only


def test_without_sweep_repair_synth_does_not_warn(example: Synthesized) -> None:
    warnings = Annotations.from_stack(example.stack).find_warning("*", Match.string_like_regexp("sweep.repair"))
    assert warnings == []
