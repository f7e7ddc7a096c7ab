"""The stack passes the AwsSolutions cdk-nag pack and cfn-lint; every acknowledged finding says why.

cdk-nag 3 runs as a CDK policy-validation plugin (``Validations.of(app).add_plugins``), not as an
Aspect: an unacknowledged finding of any severity makes synthesis fail, and its findings are no longer
CDK annotations. These tests therefore ask the pack directly (``validate_scope``) and also check that
synthesis left no AwsSolutions annotation behind, should a future version go back to annotations.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Annotations, Match
from cdk_nag import AwsSolutionsChecks

from tests.infra import Synthesized, aws_solutions_findings, cfn_lint

pytestmark = pytest.mark.xdist_group("infra")

EXECUTIONS = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:<AWS::StackName>-restore:*"


def test_stack_has_no_unacknowledged_aws_solutions_findings(example: Synthesized) -> None:
    assert aws_solutions_findings(example.stack) == []  # a report that fails without a violation is one too


def test_synthesis_leaves_no_aws_solutions_errors_or_warnings(example: Synthesized) -> None:
    annotations = Annotations.from_stack(example.stack)
    nag = Match.string_like_regexp("AwsSolutions-.*")

    assert annotations.find_error("*", nag) == []
    assert annotations.find_warning("*", nag) == []
    assert annotations.find_error("*", Match.any_value()) == []
    assert annotations.find_warning("*", Match.any_value()) == []


def test_aws_solutions_checks_catch_an_unprotected_bucket() -> None:
    # The detector, shown the fault it exists to catch: a bucket with no logging and no TLS policy.
    stack = Stack(App(), "Unprotected")
    s3.Bucket(stack, "Bucket")

    report = AwsSolutionsChecks().validate_scope(stack)

    assert not report.success
    assert {v.rule_name for v in report.violations} >= {"AwsSolutions-S1", "AwsSolutions-S10"}


def acknowledgments(example: Synthesized) -> dict[str, dict[str, str]]:
    """Per logical id, the acknowledged cdk-nag rules and their reasons (as written into the template)."""
    return {
        logical_id: {rule["id"]: rule["reason"] for rule in resource["Metadata"]["cdk_nag"]["rules_to_suppress"]}
        for logical_id, resource in example.resources.items()
        if "cdk_nag" in resource.get("Metadata", {})
    }


ROLES_AND_POLICIES = (
    ("MonitoringFreshnessRole58F397C3", "MonitoringFreshnessRoleDefaultPolicy311A435C"),
    ("BackupsordersRoleB4A92D8D", "BackupsordersRoleDefaultPolicyBF65412D"),
    ("BackupsuploadsRoleC009A0B7", "BackupsuploadsRoleDefaultPolicy5AFA5336"),
    ("RestoreRole434BA328", "RestoreRoleDefaultPolicy934BE323"),
    ("VerificationDrillordersRole8168F534", "VerificationDrillordersRoleDefaultPolicy05FD0704"),
    ("VerificationDrilluploadsRole0250AAF9", "VerificationDrilluploadsRoleDefaultPolicy10772A81"),
    ("VerificationSweepRole9ED4075A", "VerificationSweepRoleDefaultPolicy149C4D70"),
    ("VerificationGuardRole5C16D465", "VerificationGuardRoleDefaultPolicy0510E545"),
)


def test_every_acknowledgment_is_on_its_own_resource_and_says_why(example: Synthesized) -> None:
    bucket = "<VaultBucket0925C477.Arn>"
    executions = f"AwsSolutions-IAM5[Resource::{EXECUTIONS}]"
    index = "AwsSolutions-IAM5[Resource::<RestoreTable6A65C959.Arn>/index/*]"

    expected: dict[str, list[str]] = {
        "VaultAccessLogsC5E11DDC": ["AwsSolutions-S1"],
        "MonitoringDeadLettersD99D287D": ["AwsSolutions-SQS3"],
        "MonitoringFreshnessRoleDefaultPolicy311A435C": [
            f"AwsSolutions-IAM5[Resource::{bucket}/backups/orders/*.manifest.json]",
            f"AwsSolutions-IAM5[Resource::{bucket}/backups/uploads/*.manifest.json]",
        ],
        **{
            policy: [
                "AwsSolutions-IAM5[Resource::*]",
                f"AwsSolutions-IAM5[Resource::{bucket}/backups/_failures/{db}/*]",
                f"AwsSolutions-IAM5[Resource::{bucket}/backups/{db}/*]",
            ]
            for db, policy in (
                ("orders", "BackupsordersRoleDefaultPolicyBF65412D"),
                ("uploads", "BackupsuploadsRoleDefaultPolicy5AFA5336"),
            )
        },
        # the restore function: orders declares staging and in-place, each with its safety-snapshot prefix
        "RestoreRoleDefaultPolicy934BE323": sorted(
            [
                "AwsSolutions-IAM5[Resource::*]",
                executions,  # each step proves its execution context
                index,
                f"AwsSolutions-IAM5[Resource::{bucket}/backups/orders/*]",
                *(
                    f"AwsSolutions-IAM5[Resource::{bucket}/backups/{where}orders-pre-restore-{target}/*]"
                    for target in ("staging", "in-place")
                    for where in ("", "_failures/")
                ),
            ]
        ),
        **{
            policy: [
                f"AwsSolutions-IAM5[Resource::{bucket}/backups/{db}/*.drill.json]",
                f"AwsSolutions-IAM5[Resource::{bucket}/backups/{db}/*]",
            ]
            for db, policy in (
                ("orders", "VerificationDrillordersRoleDefaultPolicy05FD0704"),
                ("uploads", "VerificationDrilluploadsRoleDefaultPolicy10772A81"),
            )
        },
        "VerificationSweepRoleDefaultPolicy149C4D70": [
            f"AwsSolutions-IAM5[Resource::{bucket}/backups/{db}/{what}]"
            for db in ("orders", "uploads")
            for what in ("*.sweep.json", "*")
        ],
        # the keep-last-good guard: reads manifests and sweep records, moves tier tags
        "VerificationGuardRoleDefaultPolicy0510E545": sorted(
            f"AwsSolutions-IAM5[Resource::{bucket}/backups/{db}/{what}]"
            for db in ("orders", "uploads")
            for what in ("*.manifest.json", "*.sweep.json", "*")
        ),
        "RestoreStateMachineRoleDefaultPolicy42D4C55F": [
            "AwsSolutions-IAM5[Resource::*]",
            "AwsSolutions-IAM5[Resource::<RestoreApprovalFunction0609219E.Arn>:*]",
            "AwsSolutions-IAM5[Resource::<RestoreFunctionDC44DE99.Arn>:*]",
        ],
        # the approval component: answers the approval wait (SendTask* take no resource), reads executions
        "RestoreApprovalRoleDefaultPolicy628D5ED9": sorted(["AwsSolutions-IAM5[Resource::*]", executions]),
        # what a person needs to request or approve a restore and follow it
        "RestoreRequesterPolicyBCD1B25B": sorted([executions, index]),
        "RestoreApproverPolicyE6DA09A2": sorted([executions, index]),
        # every function's traces: X-Ray's actions take no resource
        "RunnerTracing4CEE989B": ["AwsSolutions-IAM5[Resource::*]"],
    }
    # Key patterns are acknowledged on the role, so that they also cover the overflow policies IAM's size
    # limit makes of a role with many databases; CDK writes them on the role and on its default policy.
    for role, policy in ROLES_AND_POLICIES:
        expected[role] = [rule for rule in expected[policy] if f"{bucket}/" in rule]
    # so are the restore table's indexes and the executions a step proves, for the roles that read them
    expected["RestoreRole434BA328"] = sorted([*expected["RestoreRole434BA328"], executions, index])
    expected["RestoreApprovalRoleCE1B1E62"] = [executions]
    assert {logical_id: sorted(rules) for logical_id, rules in acknowledgments(example).items()} == expected
    reasons = [reason for rules in acknowledgments(example).values() for reason in rules.values()]
    assert all(len(reason) > 80 for reason in reasons)


def test_the_log_bucket_is_acknowledged_for_not_logging_itself(example: Synthesized) -> None:
    assert "log bucket" in acknowledgments(example)["VaultAccessLogsC5E11DDC"]["AwsSolutions-S1"]


def test_wildcards_are_acknowledged_only_for_keys_named_at_run_time_and_network_interfaces(
    example: Synthesized,
) -> None:
    found = acknowledgments(example)
    reasons = [(rule, reason) for rules in found.values() for rule, reason in rules.items() if "IAM5" in rule]
    anything = "AwsSolutions-IAM5[Resource::*]"

    assert all("unknown when deploying" in r for rule, r in reasons if "Resource::<VaultBucket" in rule)
    # Resource::* is only ever Lambda's network interfaces, the state machine's and the functions' X-Ray (and the
    # machine's log delivery), or the approval component's answer to the approval wait (an action that takes no
    # resource)
    expected = {"RestoreStateMachineRole": "X-Ray", "RunnerTracing": "X-Ray", "RestoreApprovalRole": "take no resource"}
    for logical_id, rules in found.items():
        if anything in rules:
            role = next((role for role in expected if logical_id.startswith(role)), None)
            assert expected.get(role or "", "network interfaces") in rules[anything], logical_id
    # an execution wildcard stops at this state machine's own executions
    assert all("this state machine's executions" in r for rule, r in reasons if EXECUTIONS in rule)


def test_template_passes_cfn_lint(example: Synthesized, tmp_path: Path) -> None:
    result = cfn_lint(tmp_path, Backstop=example.template)

    assert result.stdout + result.stderr == ""
    assert result.returncode == 0  # 2 = errors, 4 = warnings, 8 = informational: none of them
