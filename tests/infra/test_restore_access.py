"""Who may do what to a restore, computed from the synthesized template (THREATS.md, Principals).

A small evaluator reads the template's IAM: each role's identity policies (inline, AWS::IAM::Policy
and AWS::IAM::ManagedPolicy attached to it), each operator managed policy as a principal of its own
(whoever it is attached to), the key policies and Lambda permissions. Wildcard actions are expanded
over the service authorization reference cfn-lint ships, resources are compared as intrinsics
written as text (``<RestoreTable6A65C959.Arn>``). Conditions on identity statements are assumed to
hold (the evaluator over-approximates), except ``aws:PrincipalArn`` in key policies, which names who
manages the approval key. The vault's bucket policy, which only narrows writes further, is
test_vault_access's.

Every test asserts the exact principals, and the exact actions, allowed on a protected resource:
a grant widened in the template fails it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from functools import cache
from importlib.resources import files
from typing import Any

import pytest

from backstop.adapters.restore_table import KIND_INDEX, RestoreTable
from infra.drills import DRILL_STAMP
from infra.restore_workflow import APPROVAL_LEADING_KEYS, CDK_EXECUTION_ROLES, KEY_MANAGEMENT, KEY_READS
from tests.infra import Synthesized, flatten, like, listed

pytestmark = pytest.mark.xdist_group("infra")

ACCOUNT = "arn:<AWS::Partition>:iam::<AWS::AccountId>"
ROOT = f"{ACCOUNT}:root"
STATES = "arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>"
EXECUTION = f"{STATES}:execution:<AWS::StackName>-restore:restore-orders-staging-1"
STATE_MACHINE = f"{STATES}:stateMachine:<AWS::StackName>-restore"
TASK_ANSWERS = ("states:SendTaskSuccess", "states:SendTaskFailure", "states:SendTaskHeartbeat")
POWER_USER = {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "account:*"], "Resource": "*"}
"""The identity policy of AWS's PowerUserAccess, less its few IAM and Organizations reads."""


# -- the evaluator ----------------------------------------------------------------------------------


@cache
def catalog() -> dict[str, dict[str, frozenset[str]]]:
    """Every IAM action, lower case, per service prefix, with the resource types it applies to."""
    document = json.loads(files("cfnlint.data.AdditionalSpecs").joinpath("Policies.json").read_text(encoding="utf-8"))
    return {
        service: {action: frozenset(spec.get("Resources", ())) for action, spec in body["Actions"].items()}
        for service, body in document.items()
    }


def expand(patterns: str | list[str]) -> frozenset[str]:
    """The actions ``patterns`` name, wildcards expanded: ``dynamodb:*`` is every DynamoDB action."""
    found = set()
    for pattern in listed(patterns):
        service = pattern.lower().partition(":")[0]
        services = catalog() if any(c in service for c in "*?") else {service: catalog().get(service, {})}
        known = {f"{s}:{action}" for s, actions in services.items() for action in actions}
        matched = {action for action in known if fnmatchcase(action, pattern.lower())}
        found |= matched or ({pattern.lower()} if "*" not in pattern else set())
    return frozenset(found)


def actions_on(service: str, resource_type: str) -> frozenset[str]:
    """The actions of ``service`` that apply to a resource of ``resource_type`` (``kms``, ``key``)."""
    return frozenset(f"{service}:{a}" for a, types in catalog()[service].items() if resource_type in types)


@dataclass(frozen=True)
class Statement:
    """One policy statement, its actions expanded and its intrinsics written as text."""

    effect: str
    actions: frozenset[str]
    resources: tuple[str, ...]
    not_resource: bool
    condition: dict[str, Any]
    sid: str | None

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Statement:
        statement = flatten(raw)
        if "NotAction" in statement:
            everything = {f"{s}:{a}" for s, actions in catalog().items() for a in actions}
            actions = frozenset(everything - expand(statement["NotAction"]))
        else:
            actions = expand(statement["Action"])
        resources = statement.get("Resource", statement.get("NotResource", "*"))
        return cls(
            effect=statement["Effect"],
            actions=actions,
            resources=tuple(listed(resources)),
            not_resource="NotResource" in statement,
            condition=statement.get("Condition", {}),
            sid=statement.get("Sid"),
        )

    def covers(self, action: str, resource: str) -> bool:
        named = any(like(pattern, resource) for pattern in self.resources)
        return action.lower() in self.actions and named != self.not_resource


@dataclass(frozen=True)
class Principal:
    """Who acts: a role of the stack, an operator policy's holder, or a hypothetical outsider."""

    name: str
    arn: str | None  # as aws:PrincipalArn sees it; None: whoever the policy is attached to
    refs: frozenset[str]  # how a resource policy names it
    statements: tuple[Statement, ...] = field(default=())


class Access:
    """What each principal of a synthesized template may do: ``who_may(action, resource)``."""

    def __init__(self, synthesized: Synthesized, outsiders: Iterable[Principal] = ()) -> None:
        resources = synthesized.resources
        self.principals = [*self._roles(synthesized), *self._operator_policies(synthesized), *outsiders]
        self.key_policies = {
            f"<{key_id}.Arn>": [
                (principals_of(raw), Statement.of(raw)) for raw in key["Properties"]["KeyPolicy"]["Statement"]
            ]
            for key_id, key in synthesized.of_type("AWS::KMS::Key").items()
        }
        for permission_id, permission in synthesized.of_type("AWS::Lambda::Permission").items():
            props = flatten(permission["Properties"])
            self.principals.append(
                Principal(
                    name=f"{props['Principal']} ({permission_id})",
                    arn=None,
                    refs=frozenset(),
                    statements=(
                        Statement.of({"Effect": "Allow", "Action": props["Action"], "Resource": props["FunctionName"]}),
                    ),
                )
            )
        unmodelled = {r["Type"] for r in resources.values()} & {"AWS::IAM::User", "AWS::IAM::Group"}
        assert not unmodelled, f"the evaluator does not model {unmodelled}"

    @staticmethod
    def _roles(synthesized: Synthesized) -> Iterator[Principal]:
        managed = synthesized.of_type("AWS::IAM::ManagedPolicy")
        for role_id, role in synthesized.of_type("AWS::IAM::Role").items():
            props = role["Properties"]
            documents = [p["PolicyDocument"] for p in props.get("Policies", [])]
            for policy in [*synthesized.of_type("AWS::IAM::Policy").values(), *managed.values()]:
                assert not {"Users", "Groups"} & set(policy["Properties"]), "the evaluator models roles only"
                if {"Ref": role_id} in policy["Properties"].get("Roles", []):
                    documents.append(policy["Properties"]["PolicyDocument"])
            for arn in props.get("ManagedPolicyArns", []):
                assert isinstance(arn, dict) and arn.get("Ref") in managed, f"{role_id}: unknown managed policy {arn}"
                documents.append(managed[arn["Ref"]]["Properties"]["PolicyDocument"])
            name = props.get("RoleName", f"Backstop-{role_id}-GENERATED")
            yield Principal(
                name=readable(role_id),
                arn=f"{ACCOUNT}:role{props.get('Path', '/')}{name}",
                refs=frozenset({f"<{role_id}.Arn>"}),
                statements=tuple(Statement.of(s) for document in documents for s in document["Statement"]),
            )

    @staticmethod
    def _operator_policies(synthesized: Synthesized) -> Iterator[Principal]:
        for policy_id, policy in synthesized.of_type("AWS::IAM::ManagedPolicy").items():
            if not policy["Properties"].get("Roles"):
                statements = policy["Properties"]["PolicyDocument"]["Statement"]
                yield Principal(readable(policy_id), None, frozenset(), tuple(Statement.of(s) for s in statements))

    def may(self, principal: Principal, action: str, resource: str) -> bool:
        """Whether ``principal`` may do ``action`` on ``resource`` (a key: through its key policy)."""
        if any(s.effect == "Deny" and s.covers(action, resource) for s in principal.statements):
            return False
        own = any(s.effect == "Allow" and s.covers(action, resource) for s in principal.statements)
        if resource not in self.key_policies:
            return own
        granted = [
            (who, s)
            for who, s in self.key_policies[resource]
            if s.covers(action, "*") and principal_arn_holds(s.condition, principal)
        ]
        if any(s.effect == "Deny" and names(who, principal) for who, s in granted):
            return False
        allowed = [who for who, s in granted if s.effect == "Allow"]
        return any(names(who, principal) for who in allowed) or (own and any(ROOT in who for who in allowed))

    def who_may(self, action: str, *resources: str) -> set[str]:
        """The principals that may do ``action`` on any of ``resources`` (one resource's aliases)."""
        return {p.name for p in self.principals if any(self.may(p, action, r) for r in resources)}

    def matrix(self, actions: Iterable[str], *resources: str) -> dict[str, set[str]]:
        """Per principal, which of ``actions`` it may do on ``resources``; principals allowed none left out."""
        found: dict[str, set[str]] = {}
        for action in sorted(actions):
            for name in self.who_may(action, *resources):
                found.setdefault(name, set()).add(action.lower())
        return found

    def principal(self, name: str) -> Principal:
        (found,) = [p for p in self.principals if p.name == name]
        return found


def readable(logical_id: str) -> str:
    """``RestoreApprovalRoleCE1B1E62`` -> ``RestoreApprovalRole``: the construct path, without CDK's hash."""
    return re.sub(r"[0-9A-F]{8}$", "", logical_id)


def principals_of(statement: dict[str, Any]) -> set[str]:
    principal = flatten(statement["Principal"])
    if principal == "*":
        return {"*"}
    named = principal.get("AWS", [])
    return set(listed(named))


def names(who: set[str], principal: Principal) -> bool:
    return "*" in who or bool(who & principal.refs) or principal.arn in who


def principal_arn_holds(condition: dict[str, Any], principal: Principal) -> bool:
    """Whether an ``aws:PrincipalArn`` condition can hold for ``principal``; any other key may hold."""
    for operator, tests in condition.items():
        for key, patterns in tests.items():
            if key.lower() != "aws:principalarn" or principal.arn is None:
                continue
            matched = any(like(p, principal.arn) for p in listed(patterns))
            if matched == ("Not" in operator):
                return False
    return True


def lower(*actions: str) -> set[str]:
    return {a.lower() for a in actions}


# -- the template ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def access(example: Synthesized) -> Access:
    return Access(example)


def arn_of(synthesized: Synthesized, resource_type: str, prefix: str) -> str:
    logical_id, _ = synthesized.one(resource_type, prefix)
    return f"<{logical_id}.Arn>"


def function_arn(synthesized: Synthesized, handler: str) -> str:
    logical_id, _ = synthesized.function_running(handler)
    return f"<{logical_id}.Arn>"


def approval_key(synthesized: Synthesized) -> str:
    return arn_of(synthesized, "AWS::KMS::Key", "RestoreApprovalKey")


def vault_object(synthesized: Synthesized, key: str) -> str:
    return f"{arn_of(synthesized, 'AWS::S3::Bucket', 'VaultBucket')}/backups/{key}"


# -- the approval key: only the approval role seals grants, only the restore role checks them ------------


@pytest.mark.parametrize(
    ("action", "role"),
    [
        pytest.param("kms:GenerateMac", "RestoreApprovalRole", id="only-the-approval-role-seals"),
        pytest.param("kms:VerifyMac", "RestoreRole", id="only-the-restore-role-checks"),
    ],
)
def test_only_one_role_may_seal_or_check_an_approval_grant(
    example: Synthesized, access: Access, action: str, role: str
) -> None:
    assert access.who_may(action, approval_key(example)) == {role}


def test_no_principal_of_the_stack_may_do_anything_else_with_the_approval_key(
    example: Synthesized, access: Access
) -> None:
    # not CreateGrant (which would hand GenerateMac out), not PutKeyPolicy, not even DescribeKey
    assert access.matrix(actions_on("kms", "key"), approval_key(example)) == {
        "RestoreApprovalRole": lower("kms:GenerateMac"),
        "RestoreRole": lower("kms:VerifyMac"),
    }


def test_the_key_policy_lets_the_account_only_read_and_only_deployments_manage(example: Synthesized) -> None:
    _, key = example.one("AWS::KMS::Key", "RestoreApprovalKey")
    statements = {
        s.sid: (principals_of(raw), s.actions, s.condition)
        for raw in key["Properties"]["KeyPolicy"]["Statement"]
        if (s := Statement.of(raw)).effect == "Allow"
    }
    execution_roles = f"{ACCOUNT}:{CDK_EXECUTION_ROLES}"

    assert statements == {
        # the account root delegates to IAM: only reads, so `kms:*` in an identity policy reaches no more
        "AccountReadsTheKey": ({ROOT}, lower(*KEY_READS), {}),
        "OnlyDeploymentsManageTheKey": (
            {ROOT},
            lower(*KEY_MANAGEMENT),
            {"ArnLike": {"aws:PrincipalArn": execution_roles}},
        ),
        "OnlyTheApprovalRoleSealsGrants": (
            {arn_of(example, "AWS::IAM::Role", "RestoreApprovalRole")},
            lower("kms:GenerateMac"),
            {},
        ),
        "OnlyTheRestoreRoleChecksGrants": (
            {arn_of(example, "AWS::IAM::Role", "RestoreRole")},
            lower("kms:VerifyMac"),
            {},
        ),
    }
    granted = {action for _, actions, _ in statements.values() for action in actions}
    assert not granted & lower("kms:CreateGrant", "kms:ReplicateKey", "kms:CreateAlias", "kms:UpdateAlias")
    assert {s for s, (_, actions, _) in statements.items() if "kms:putkeypolicy" in actions} == {
        "OnlyDeploymentsManageTheKey"
    }


def test_account_wide_kms_rights_cannot_seal_or_check_a_grant(example: Synthesized) -> None:
    # given a PowerUser, whose identity policy allows kms:* (and everything else but IAM) on every resource
    outsider = Principal("PowerUser", f"{ACCOUNT}:role/PowerUser", frozenset(), (Statement.of(POWER_USER),))

    # when it tries the approval key, it gets what the account root's statement delegates: reads
    found = Access(example, [outsider]).matrix(actions_on("kms", "key"), approval_key(example))

    assert found["PowerUser"] == lower(*KEY_READS)


def test_what_an_administrator_can_still_do_is_rewrite_the_key_policy_as_a_deployment(example: Synthesized) -> None:
    # An administrator can still seal a grant, in steps CloudTrail records: act as the deployment (a role named
    # like CDK's CloudFormation execution role, or a deployment through CDK's bootstrap roles), rewrite the key
    # policy, then GenerateMac. Whoever may assume the bootstrap deploy role may deploy: its trust is the guard.
    deployer = Principal(
        "Deployer",
        f"{ACCOUNT}:role/cdk-hnb659fds-cfn-exec-role-123456789012-eu-west-1",
        frozenset(),
        (Statement.of({"Effect": "Allow", "Action": "*", "Resource": "*"}),),
    )

    found = Access(example, [deployer]).matrix(actions_on("kms", "key"), approval_key(example))

    assert found["Deployer"] == lower(*KEY_READS, *KEY_MANAGEMENT)
    assert "kms:generatemac" not in found["Deployer"]  # not without a new key policy first


# -- the approval wait, the state machine and its functions ------------------------------------------


def test_only_the_approval_role_may_answer_an_approval_wait(access: Access) -> None:
    # these actions take no resource: a token names the execution (and authorizes nothing by itself)
    assert access.matrix(TASK_ANSWERS, "*") == {
        "RestoreApprovalRole": lower("states:SendTaskSuccess", "states:SendTaskFailure"),
    }


def test_only_holders_of_the_requester_policy_may_start_a_restore(example: Synthesized, access: Access) -> None:
    (machine_id,) = example.of_type("AWS::StepFunctions::StateMachine")

    found = access.matrix(actions_on("states", "statemachine"), f"<{machine_id}>", STATE_MACHINE)

    assert found == {"RestoreRequesterPolicy": lower("states:StartExecution")}  # no role of the stack


def test_restores_are_followed_but_never_stopped_or_redriven(access: Access) -> None:
    follow = lower("states:DescribeExecution", "states:GetExecutionHistory")

    assert access.matrix(actions_on("states", "execution"), EXECUTION) == {
        "RestoreRole": follow,  # each step proves its execution context
        "RestoreApprovalRole": follow,  # reads the plan and the token from what Step Functions recorded
        "RestoreRequesterPolicy": follow,
        "RestoreApproverPolicy": follow,
    }


@pytest.mark.parametrize(
    ("handler", "invokers"),
    [
        pytest.param("restore", {"RestoreStateMachineRole"}, id="restore-by-the-state-machine-only"),
        pytest.param(
            "approval",
            {
                "RestoreStateMachineRole",  # IdentifyRequester
                "RestoreApproverPolicy",  # backstop approve / reject
            },
            id="approval-by-the-state-machine-and-approvers-only",
        ),
    ],
)
def test_who_may_invoke_each_restore_function(
    example: Synthesized, access: Access, handler: str, invokers: set[str]
) -> None:
    function = function_arn(example, handler)

    assert access.matrix(actions_on("lambda", "function"), function, f"{function}:1") == dict.fromkeys(
        invokers, lower("lambda:InvokeFunction")
    )


def test_broad_rights_reach_the_approval_function_so_it_must_judge_every_caller_itself(example: Synthesized) -> None:
    # Residual risk, as it is: IAM cannot keep a PowerUser from invoking the approval function or starting an
    # execution (PowerUserAccess allows both, and a Lambda resource policy cannot deny). What they cannot do is
    # seal a grant themselves: whether they may approve is the approval component's decision (restore.approvers
    # when set, the phrase, four eyes on their verified identity), not whether they hold the ApproverPolicy.
    outsider = Principal("PowerUser", f"{ACCOUNT}:role/PowerUser", frozenset(), (Statement.of(POWER_USER),))
    found = Access(example, [outsider])

    assert "PowerUser" in found.who_may("lambda:InvokeFunction", function_arn(example, "approval"))
    assert "PowerUser" not in found.who_may("kms:GenerateMac", approval_key(example))


# -- the restore table: locks, approvals, audit ---------------------------------------------------------


def test_only_the_restore_and_approval_roles_write_the_restore_table_and_drills_add_audit_records(
    example: Synthesized, access: Access
) -> None:
    table = arn_of(example, "AWS::DynamoDB::Table", "RestoreTable")
    reads = lower("dynamodb:GetItem", "dynamodb:Query")

    found = access.matrix(actions_on("dynamodb", "table"), table)

    assert found == {
        "RestoreRole": lower(
            "dynamodb:BatchGetItem",
            "dynamodb:BatchWriteItem",
            "dynamodb:ConditionCheckItem",
            "dynamodb:DeleteItem",
            "dynamodb:DescribeTable",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:Scan",
            "dynamodb:UpdateItem",
        ),
        "RestoreApprovalRole": lower(
            "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"
        ),
        # each drill adds its audit record, confined to its own keys (below)
        "VerificationDrillordersRole": lower("dynamodb:PutItem"),
        "VerificationDrilluploadsRole": lower("dynamodb:PutItem"),
        "RestoreRequesterPolicy": reads,
        "RestoreApproverPolicy": reads,
    }
    assert access.matrix(actions_on("dynamodb", "index"), f"{table}/index/{KIND_INDEX}") == {
        "RestoreRole": lower("dynamodb:Query", "dynamodb:Scan"),
        "RestoreRequesterPolicy": lower("dynamodb:Query"),
        "RestoreApproverPolicy": lower("dynamodb:Query"),
    }


@pytest.mark.parametrize("database", ["orders", "uploads"])
def test_a_drill_writes_only_under_its_own_drill_keys_in_the_restore_table(access: Access, database: str) -> None:
    (table_statement,) = [
        s
        for s in access.principal(f"VerificationDrill{database}Role").statements
        if any(a.startswith("dynamodb:") for a in s.actions)
    ]

    assert table_statement.actions == lower("dynamodb:PutItem")
    assert table_statement.condition == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": [f"restore#drill-{database}-{DRILL_STAMP}"]}
    }


def test_the_approval_role_reaches_approvals_audit_records_and_refusals_but_never_a_lock(
    example: Synthesized, access: Access
) -> None:
    (table_statement,) = [
        s
        for s in access.principal("RestoreApprovalRole").statements
        if any(a.startswith("dynamodb:") for a in s.actions)
    ]
    assert table_statement.condition == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": APPROVAL_LEADING_KEYS}}

    # and the keys the approval component's own calls use (backstop.adapters.restore_table) are exactly those
    client = RecordingClient()
    table = RestoreTable(client, "restore-table")
    execution = "arn:aws:states:eu-west-1:123456789012:execution:Backstop-restore:r1"
    table.take_approval(execution)
    table.update_audit(execution, {"grant": {"backup_id": "b"}})
    table.record_refusal({"step": "identify_requester"}, datetime(2026, 1, 1, tzinfo=UTC))
    table.acquire("orders", "staging", execution, datetime(2026, 1, 1, tzinfo=UTC), ttl=timedelta(hours=1))
    (*approvals, lock) = client.partition_keys

    assert all(any(fnmatchcase(key, p) for p in APPROVAL_LEADING_KEYS) for key in approvals), approvals
    assert not any(fnmatchcase(lock, p) for p in APPROVAL_LEADING_KEYS), lock


class RecordingClient:
    """A DynamoDB client that records the partition key of every call and succeeds."""

    def __init__(self) -> None:
        self.partition_keys: list[str] = []

    def __getattr__(self, operation: str) -> Any:
        def call(**kwargs: Any) -> dict[str, Any]:
            item = kwargs.get("Key") or kwargs.get("Item") or {}
            self.partition_keys.append(item["pk"]["S"])
            return {}

        return call


# -- what the approval role is not ----------------------------------------------------------------------


@pytest.mark.parametrize("synthesized", ["example", "servers"], indirect=True)
def test_the_approval_role_touches_no_backup_no_secret_and_no_target(synthesized: Synthesized) -> None:
    role = Access(synthesized).principal("RestoreApprovalRole")
    services = {action.partition(":")[0] for statement in role.statements for action in statement.actions}

    # no s3 (the vault), no secretsmanager (the targets' passwords), no network or file system; its traces
    assert services == {"dynamodb", "kms", "logs", "sns", "states", "xray"}
    kms = {r for s in role.statements if any(a.startswith("kms:") for a in s.actions) for r in s.resources}
    assert kms == {arn_of(synthesized, "AWS::KMS::Key", "MonitoringKey")}  # the alerts topic's, through SNS
    assert role.arn is not None and ":role/backstop/" not in role.arn  # not on the vault writers' path


# -- the vault: who writes under which prefix -----------------------------------------------------------


S3_WRITES = frozenset(a for a in actions_on("s3", "object") if not a.startswith(("s3:get", "s3:list")))


@pytest.mark.parametrize(
    ("key", "writers"),
    [
        # the guard only moves a backup's tier tag between <tier> and held-<tier> (test_keep_last_good)
        ("orders/2026-01-01T020000Z.tar.zst", {"BackupsordersRole", "VerificationGuardRole"}),
        ("orders-pre-restore-staging/2026-01-01T020000Z.tar.zst", {"RestoreRole"}),
        ("orders-pre-restore-in-place/2026-01-01T020000Z.tar.zst", {"RestoreRole"}),
        ("_locks/orders-pre-restore-staging.backup.json", {"RestoreRole"}),
        ("_locks/orders.backup.json", {"BackupsordersRole", "RestoreRole"}),  # no backup during an in-place restore
        ("_failures/orders-pre-restore-staging/2026-01-01T020000Z.json", {"RestoreRole"}),
        ("_failures/orders/2026-01-01T020000Z.json", {"BackupsordersRole"}),
        (
            "orders/2026-01-01T020000Z.drill.json",
            {"BackupsordersRole", "VerificationDrillordersRole", "VerificationGuardRole"},
        ),
        ("uploads/2026-01-01T020000Z.tar.gz", {"BackupsuploadsRole", "VerificationGuardRole"}),
        ("_locks/uploads.backup.json", {"BackupsuploadsRole"}),
    ],
)
def test_who_writes_each_vault_prefix(example: Synthesized, access: Access, key: str, writers: set[str]) -> None:
    assert set(access.matrix(S3_WRITES, vault_object(example, key))) == writers


def test_the_restore_role_reads_its_backups_and_writes_only_safety_snapshots_locks_and_failures(
    example: Synthesized, access: Access
) -> None:
    role = access.principal("RestoreRole")
    written = {r for s in role.statements if s.actions & S3_WRITES for r in s.resources}
    bucket = arn_of(example, "AWS::S3::Bucket", "VaultBucket")
    safety = ("orders-pre-restore-staging", "orders-pre-restore-in-place")

    assert written == {
        *(f"{bucket}/backups/{name}/*" for name in safety),
        *(f"{bucket}/backups/_failures/{name}/*" for name in safety),
        *(f"{bucket}/backups/_locks/{name}.backup.json" for name in (*safety, "orders")),
    }
    backup = vault_object(example, "orders/2026-01-01T020000Z.tar.zst")
    assert access.matrix(actions_on("s3", "object"), backup)["RestoreRole"] == lower(
        "s3:GetObject", "s3:GetObjectVersion"
    )
