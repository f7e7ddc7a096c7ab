"""The restore workflow in the synthesized stack: states, timeouts, retries, logging, the function and its grants."""

from __future__ import annotations

import inspect
import json
from typing import Any

import pytest
from aws_cdk import App

from backstop import errors
from backstop.config import parse_config
from backstop.config.catalog import digest
from backstop.errors import ConfigError
from backstop.workflow_steps import FINISH_OUTCOMES, STEP_STATES, STEPS
from infra.restore_workflow import LAMBDA_TRANSIENT
from infra.stack import BackstopStack
from tests.infra import Synthesized, flatten

pytestmark = pytest.mark.xdist_group("infra")

ORDER = [
    "Resolve",
    "IdentifyRequester",
    "ValidateArtifact",
    "Lock",
    "Plan",
    "DryRun?",
    "Approval",
    "CheckApproval",
    "SafetySnapshot",
    "Restore",
]
STATE_MACHINE_ARN = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:<AWS::StackName>-restore"


def machine(synthesized: Synthesized) -> dict[str, Any]:
    ((_, resource),) = synthesized.of_type("AWS::StepFunctions::StateMachine").items()
    props: dict[str, Any] = resource["Properties"]
    return props


def definition(synthesized: Synthesized) -> dict[str, Any]:
    """The state machine's definition with its intrinsics written as text (function ARNs as <Id.Arn>)."""
    parsed: dict[str, Any] = json.loads(flatten(machine(synthesized)["DefinitionString"]))
    return parsed


def states(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = definition(synthesized)["States"]
    return found


def restore_function(synthesized: Synthesized) -> dict[str, Any]:
    return dict(synthesized.function_running("restore")[1])


def test_the_states_run_in_the_designed_order(example: Synthesized) -> None:
    found = states(example)
    path, name = [], definition(example)["StartAt"]
    while name in found and len(path) < 20:
        path.append(name)
        state = found[name]
        name = state["Default"] if state["Type"] == "Choice" else state.get("Next")

    assert path[: len(ORDER)] == ORDER
    assert path[len(ORDER) :] == ["ValidateTarget", "FinishRestored", "Restored"]
    (dry_run,) = found["DryRun?"]["Choices"]
    assert dry_run == {"Variable": "$.dry_run", "BooleanEquals": True, "Next": "FinishDryRun"}


def test_every_task_has_a_timeout_and_explicit_retries(example: Synthesized) -> None:
    tasks = {name: s for name, s in states(example).items() if s["Type"] == "Task"}

    assert len(tasks) >= 12
    for name, state in tasks.items():
        assert 0 < state["TimeoutSeconds"] <= 86400, name
        assert state["Retry"], name
        for retry in state["Retry"]:
            assert "States.ALL" not in retry["ErrorEquals"], name  # a failed restore step is never blindly re-run
            assert retry["MaxAttempts"] <= (4 if retry["ErrorEquals"] == ["BackupAlreadyRunningError"] else 3), name
    assert all(s["TimeoutSeconds"] <= 900 for name, s in tasks.items() if name != "Approval")


def test_the_approval_waits_for_a_task_token_as_long_as_configured(example: Synthesized, servers: Synthesized) -> None:
    approval = states(example)["Approval"]

    assert approval["Resource"].endswith(":states:::lambda:invoke.waitForTaskToken")
    assert approval["Parameters"]["Payload"]["token.$"] == "$$.Task.Token"
    assert approval["TimeoutSeconds"] == 24 * 3600  # the default
    assert states(servers)["Approval"]["TimeoutSeconds"] == 2 * 3600  # restore.approval_timeout: 2h
    # the whole execution outlives the wait by the time a restore and a rollback take
    assert machine(servers)["DefinitionString"] and definition(servers)["TimeoutSeconds"] == (2 + 12) * 3600


def test_failures_before_the_snapshot_end_untouched_and_after_it_roll_back(example: Synthesized) -> None:
    found = states(example)

    def caught_by(name: str) -> str:
        (catch,) = found[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"]
        return str(catch["Next"])

    for name in ("Resolve", "IdentifyRequester", "ValidateArtifact", "Lock", "Plan", "Approval", "CheckApproval"):
        assert caught_by(name) == "FinishNotRestored", name
    assert caught_by("SafetySnapshot") == "FinishNotRestored"
    for name in ("Restore", "ValidateTarget"):
        assert caught_by(name) == "Rollback", name
    assert caught_by("Rollback") == "FinishRollbackFailed"
    assert caught_by("FinishRollbackFailed") == "RollbackFailed"
    assert found["FinishRollbackFailed"]["Parameters"]["outcome"] == "rollback failed"
    assert found["RollbackFailed"]["Type"] == "Fail"
    assert "lock is kept" in found["RollbackFailed"]["Cause"]
    assert found["Rollback"]["Next"] == "FinishRolledBack"


def test_the_state_machine_logs_without_execution_data_and_is_traced(example: Synthesized) -> None:
    props = machine(example)

    assert props["LoggingConfiguration"]["Level"] == "ALL"
    assert props["LoggingConfiguration"]["IncludeExecutionData"] is False  # the approval token stays out
    assert props["TracingConfiguration"] == {"Enabled": True}
    (destination,) = props["LoggingConfiguration"]["Destinations"]
    (group_id,) = [k for k, r in example.of_type("AWS::Logs::LogGroup").items() if k.startswith("RestoreLogs")]
    assert destination["CloudWatchLogsLogGroup"]["LogGroupArn"] == {"Fn::GetAtt": [group_id, "Arn"]}
    # a vended-logs name: no CloudWatch Logs resource policy entry, which has a size limit per account
    assert flatten(example.resources[group_id]["Properties"]["LogGroupName"]) == (
        "/aws/vendedlogs/states/<AWS::StackName>-restore"
    )


def test_the_restore_function_gets_the_targets_but_never_a_secret(servers: Synthesized) -> None:
    env = restore_function(servers)["Environment"]["Variables"]
    document = json.loads(flatten(env["BACKSTOP_CONFIG_JSON"]))
    catalog = servers.catalog()

    # the databases are the catalog's, bound to this deploy by its digest; the environment holds none
    assert "databases" not in document
    assert env["BACKSTOP_CATALOG"] == "/backstop/Backstop/databases"
    assert env["BACKSTOP_CATALOG_DIGEST"] == digest(catalog)
    billing = servers.catalog_databases()["billing"]
    assert billing["restore_targets"]["staging"]["host"] == "billing-staging.example.internal"
    assert document["restore"].items() >= {"approval_timeout": "2h", "distinct_approver": True}.items()
    assert set(env) == {
        "BACKSTOP_CONFIG_JSON",
        "BACKSTOP_CATALOG",
        "BACKSTOP_CATALOG_DIGEST",
        "BACKSTOP_RESTORE_TABLE",
        "BACKSTOP_STATE_MACHINE_ARN",
        "BACKSTOP_APPROVAL_KEY_ARN",
        "POWERTOOLS_SERVICE_NAME",
        "POWERTOOLS_METRICS_NAMESPACE",
    }
    assert "password" not in (json.dumps(document) + "".join(catalog.values())).replace("password_secret", "")


def test_the_restore_role_reads_the_sources_and_the_targets_secrets_only(servers: Synthesized) -> None:
    statements = servers.role_statements("RestoreRole")
    (secrets,) = [s for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]

    assert sorted(secrets["Resource"]) == [
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/billing-AbCdEf",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/billing-staging-QwErTy",
    ]


def test_the_restore_function_runs_where_its_databases_are(example: Synthesized, servers: Synthesized) -> None:
    # the example's orders (SQLite on EFS): the same VPC and a writable mount of the access point
    props = restore_function(example)
    assert props["VpcConfig"]["SubnetIds"] == ["subnet-0123456789abcdef0", "subnet-0fedcba9876543210"]
    (mount,) = props["FileSystemConfigs"]
    assert mount["LocalMountPath"] == "/mnt/data"
    (efs,) = [s for s in example.role_statements("RestoreRole") if s.get("Sid") == "MountTheDatabaseFileSystem"]
    assert efs["Action"] == ["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"]
    # the servers' billing (PostgreSQL in a VPC): the VPC, no file system
    props = restore_function(servers)
    assert props["VpcConfig"]["SecurityGroupIds"] == ["sg-0123456789abcdef0"]
    assert "FileSystemConfigs" not in props


def test_the_stack_outputs_where_to_start_and_approve_a_restore(example: Synthesized) -> None:
    outputs = {name: flatten(output["Value"]) for name, output in example.template.to_json()["Outputs"].items()}
    (machine_id,) = example.of_type("AWS::StepFunctions::StateMachine")
    approval_id, _ = example.function_running("approval")
    requester_id, _ = example.one("AWS::IAM::ManagedPolicy", "RestoreRequesterPolicy")
    approver_id, _ = example.one("AWS::IAM::ManagedPolicy", "RestoreApproverPolicy")
    table_id, _ = example.one("AWS::DynamoDB::Table", "RestoreTable")

    assert outputs["RestoreStateMachineArn"] == f"<{machine_id}>"
    assert outputs["ApprovalFunctionName"] == {"Fn::Select": [6, {"Fn::Split": [":", f"<{approval_id}.Arn>"]}]}
    assert outputs["RequesterPolicyArn"] == f"<{requester_id}>"
    assert outputs["ApproverPolicyArn"] == f"<{approver_id}>"
    assert outputs["RestoreTableName"] == f"<{table_id}>"


# -- restore authorization: the execution in every payload, the approval component and its key -------------


def test_every_step_is_told_its_execution_to_prove_it(example: Synthesized) -> None:
    tasks = {name: s for name, s in states(example).items() if s["Type"] == "Task"}

    for name, state in tasks.items():
        parameters = state["Parameters"].get("Payload", state["Parameters"])  # the waitForTaskToken form nests it
        assert parameters["execution.$"] == "$$.Execution.Id", name
        assert {k for k in parameters if k.endswith(".$")} <= {
            "execution.$",
            "state.$",
            "input.$",
            "error.$",
            "token.$",
        }


def test_the_approval_function_identifies_the_requester_and_every_other_step_is_the_restore_functions(
    example: Synthesized,
) -> None:
    restore_id, _ = example.function_running("restore")
    approval_id, _ = example.function_running("approval")
    found = states(example)

    def function(state: dict[str, Any]) -> str:
        return str(state["Parameters"]["FunctionName"] if "FunctionName" in state["Parameters"] else state["Resource"])

    invoked = {name: function(s) for name, s in found.items() if s["Type"] == "Task"}
    assert {name for name, arn in invoked.items() if arn == f"<{approval_id}.Arn>"} == {"IdentifyRequester"}
    assert {arn for name, arn in invoked.items() if name != "IdentifyRequester"} == {f"<{restore_id}.Arn>"}
    identify = found["IdentifyRequester"]
    assert identify["Parameters"] == {"step": "identify_requester", "execution.$": "$$.Execution.Id"}
    assert identify["ResultPath"] == "$.requester"  # the rest of the state is kept
    assert found["CheckApproval"]["Parameters"]["step"] == "check_approval"
    assert found["Approval"]["ResultPath"] == "$.approval"  # the answer, checked by CheckApproval next


def test_the_state_machine_has_the_name_the_functions_are_told(example: Synthesized) -> None:
    assert flatten(machine(example)["StateMachineName"]) == "<AWS::StackName>-restore"
    for handler in ("restore", "approval"):
        env = example.function_running(handler)[1]["Environment"]["Variables"]
        assert flatten(env["BACKSTOP_STATE_MACHINE_ARN"]) == STATE_MACHINE_ARN, handler


@pytest.mark.parametrize(
    ("synthesized", "distinct", "approvers"),
    [
        ("example", "false", "[]"),  # restore.approvers unset: whoever may invoke the approval function
        ("servers", "true", '["arn:aws:sts::123456789012:assumed-role/backstop-approver/*"]'),
    ],
    indirect=["synthesized"],
)
def test_the_approval_function_gets_the_key_the_table_the_topic_and_who_may_approve(
    synthesized: Synthesized, distinct: str, approvers: str
) -> None:
    _, props = synthesized.function_running("approval")
    env = flatten(props["Environment"]["Variables"])
    key_id, _ = synthesized.one("AWS::KMS::Key", "RestoreApprovalKey")
    table_id, _ = synthesized.one("AWS::DynamoDB::Table", "RestoreTable")
    topic_id, _ = synthesized.one("AWS::SNS::Topic", "MonitoringTopic")
    role_id, _ = synthesized.one("AWS::IAM::Role", "RestoreApprovalRole")

    assert env == {
        "BACKSTOP_RESTORE_TABLE": f"<{table_id}>",
        "BACKSTOP_STATE_MACHINE_ARN": STATE_MACHINE_ARN,
        "BACKSTOP_APPROVAL_KEY_ARN": f"<{key_id}.Arn>",
        "BACKSTOP_DISTINCT_APPROVER": distinct,
        "BACKSTOP_APPROVERS": approvers,
        "BACKSTOP_ALERTS_TOPIC_ARN": f"<{topic_id}>",
        "POWERTOOLS_SERVICE_NAME": "approval",
    }
    assert flatten(props["Role"]) == f"<{role_id}.Arn>"  # its own role, not the restore function's
    assert "VpcConfig" not in props and "FileSystemConfigs" not in props  # it reaches no database
    assert flatten(restore_function(synthesized)["Environment"]["Variables"]["BACKSTOP_APPROVAL_KEY_ARN"]) == (
        f"<{key_id}.Arn>"
    )


def test_the_approval_key_is_an_hmac_key_that_is_kept_30_days_after_deletion(example: Synthesized) -> None:
    _, key = example.one("AWS::KMS::Key", "RestoreApprovalKey")
    props = key["Properties"]

    assert props["KeySpec"] == "HMAC_256"
    assert props["KeyUsage"] == "GENERATE_VERIFY_MAC"
    assert props["PendingWindowInDays"] == 30
    assert "EnableKeyRotation" not in props  # KMS does not rotate HMAC keys


def test_without_restore_targets_there_is_no_restore_workflow() -> None:
    config = parse_config("bucket: b-backups\ndatabases: [{name: o, engine: postgres, host: h, dbname: o, user: u}]\n")
    stack = BackstopStack(App(), "Backstop", config=config)

    assert stack.restore is None


SQLITE_ON_EFS = """
bucket: b-backups
databases:
  - name: orders
    engine: sqlite
    path: /mnt/data/orders.db
    vpc: {subnet_ids: [subnet-0123456789abcdef0], security_group_ids: [sg-0123456789abcdef0]}
    efs: {file_system_id: fs-0123456789abcdef0, access_point_id: fsap-0123456789abcdef0, mount_path: /mnt/data}
    restore_targets: {TARGETS}
"""


def test_a_file_target_outside_the_mount_is_refused_where_it_is_written() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(SQLITE_ON_EFS.replace("{TARGETS}", "{staging: {path: /var/staging/orders.db}}"))

    message = str(refused.value)
    assert "backstop.yaml:9: databases[0].restore_targets.staging" in message
    assert "is not under the EFS mount path '/mnt/data'" in message
    assert ": :" not in message and "Value error" not in message


def test_file_targets_under_the_mount_deploy() -> None:
    config = parse_config(SQLITE_ON_EFS.replace("{TARGETS}", "{in-place: {}, copy: {path: /mnt/data/copy.db}}"))

    assert BackstopStack(App(), "Backstop", config=config).restore is not None


def test_restorable_databases_in_different_vpcs_are_refused_at_synth() -> None:
    config = parse_config(
        """
bucket: b-backups
databases:
  - {name: a, engine: postgres, host: a, dbname: a, user: u, restore_targets: {in-place: {}},
     vpc: {subnet_ids: [subnet-0123456789abcdef0], security_group_ids: [sg-0123456789abcdef0]}}
  - {name: b, engine: postgres, host: b, dbname: b, user: u, restore_targets: {in-place: {}},
     vpc: {subnet_ids: [subnet-0fedcba9876543210], security_group_ids: [sg-0123456789abcdef0]}}
"""
    )
    with pytest.raises(ConfigError, match="restorable databases a, b are in different VPC settings"):
        BackstopStack(App(), "Backstop", config=config)


def test_a_target_password_from_the_environment_is_refused_at_synth_but_not_on_the_emulator() -> None:
    config = parse_config(
        "bucket: b-backups\ndatabases: [{name: a, engine: postgres, host: a, dbname: a, user: u,"
        " restore_targets: {staging: {host: s, password_env: S_PW}}}]\n"
    )
    with pytest.raises(ConfigError, match="restore target staging: password_env"):
        BackstopStack(App(), "Backstop", config=config)
    assert BackstopStack(App(), "Local", config=config, emulated=True).restore is not None


def test_an_in_place_restore_waits_for_a_running_backup_and_may_hold_the_sources_backup_lock(
    example: Synthesized,
) -> None:
    safety = states(example)["SafetySnapshot"]
    (wait,) = [r for r in safety["Retry"] if r["ErrorEquals"] == ["BackupAlreadyRunningError"]]
    assert wait["IntervalSeconds"] * (1 + 2 + 4 + 8) == 15 * 60 and wait["MaxAttempts"] == 4

    (locks,) = [s for s in example.role_statements("RestoreRole") if s.get("Sid") == "RunLocks"]
    bucket = "<VaultBucket0925C477.Arn>"
    assert sorted(locks["Resource"]) == [
        f"{bucket}/backups/_locks/orders-pre-restore-in-place.backup.json",
        f"{bucket}/backups/_locks/orders-pre-restore-staging.backup.json",
        f"{bucket}/backups/_locks/orders.backup.json",  # orders declares in-place
    ]


# -- the names both sides share: steps, states and errors ------------------------------------------------


def sent_step(state: dict[str, Any]) -> str:
    parameters = state["Parameters"].get("Payload", state["Parameters"])  # the waitForTaskToken form nests it
    return str(parameters["step"])


def test_every_task_sends_a_shared_step_from_a_state_the_step_guard_admits_it_from(example: Synthesized) -> None:
    tasks = {name: state for name, state in states(example).items() if state["Type"] == "Task"}

    # a state renamed on one side only would be refused by the step guard in every execution
    assert {sent_step(state) for state in tasks.values()} == set(STEPS)
    assert set(tasks) == set().union(*STEP_STATES.values())
    for name, state in tasks.items():
        assert name in STEP_STATES[sent_step(state)], name
    for name, outcome in FINISH_OUTCOMES.items():
        assert tasks[name]["Parameters"]["outcome"] == outcome, name


def test_every_error_a_catch_or_retry_names_is_an_exception_class_of_backstop_errors(example: Synthesized) -> None:
    named = {
        error
        for state in states(example).values()
        for clause in [*state.get("Retry", []), *state.get("Catch", [])]
        for error in clause["ErrorEquals"]
    }
    classes = {
        name
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, errors.BackstopError) and cls.__module__ == errors.__name__
    }

    ours = named - {"States.ALL", *LAMBDA_TRANSIENT}
    assert ours == {"BackupAlreadyRunningError"}  # the in-place safety snapshot waits for the source's backup
    assert ours <= classes  # a renamed class would otherwise never match, and the wait would become a failure
