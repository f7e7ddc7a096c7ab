"""Infrastructure tests: the synthesized template, its lifecycle rules, cdk-nag and cfn-lint.

``synthesized_example`` builds the app exactly as ``cdk synth`` does (``app.build`` with the context
of cdk.json) once per test process; every template test reads that one result. The infra modules
share the xdist group "infra", so under ``make unit`` that is one synthesis in total.

The fixtures that hand those results to the tests (``example``, ``servers``, ``synthesized``) are in
conftest.py; the readers every module uses (a resource's properties, a role's statements, a function's
environment, cdk-nag's and cfn-lint's findings) are here, with the small evaluator that plays a bucket
policy against requests (moto evaluates none).
"""

from __future__ import annotations

import os

# jsii starts its Node process at the first `import aws_cdk` and reads this then, so it comes first.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from app import build
from infra.stack import BackstopStack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "backstop.yaml"
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]
CFN_LINT = Path(sys.executable).parent / "cfn-lint"


SERVERS_CONFIG = """\
bucket: backstop-servers
prefix: db
alerts:
  emails: [oncall@example.com, dba@example.com]
storage:
  object_lock: {mode: compliance, days: 10}
  writers: [arn:aws:iam::123456789012:role/backstop-operator]
  administrators: [arn:aws:iam::123456789012:role/vault-admin]
freshness:
  every: 30m
restore:
  approval_timeout: 2h
  distinct_approver: true
  approvers: [arn:aws:sts::123456789012:assumed-role/backstop-approver/*]
runner:
  architecture: arm64
  log_retention_days: 30
databases:
  - name: billing
    engine: postgres
    host: billing.example.internal
    dbname: billing
    user: backstop
    password_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/billing-AbCdEf
    schedule: cron(0 3 * * ? *)
    timezone: Europe/Paris
    stale_after: 2d
    function: {timeout: 10m}
    vpc:
      subnet_ids: [subnet-0123456789abcdef0]
      security_group_ids: [sg-0123456789abcdef0]
    restore_targets:
      staging:
        host: billing-staging.example.internal
        password_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/billing-staging-QwErTy
  - name: shop
    engine: mysql
    host: shop.example.internal
    dbname: shop
    user: backstop
    password_secret: arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/shop-XyZ123
    schedule: rate(6 hours)
"""
"""Server databases with secrets, a time zone, Object Lock, extra writers, approvers, arm64: what the example
does not use."""


def many_databases(count: int, *, targets: bool) -> str:
    """A configuration of ``count`` PostgreSQL databases with secrets (``db000`` ...), each with a staging
    restore target if ``targets``: for the limits a fleet runs into."""
    secret = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/{name}-AbCdEf"
    entries = []
    for index in range(count):
        name = f"db{index:03d}"
        entry = (
            f"  - name: {name}\n    engine: postgres\n    host: {name}.example.internal\n    dbname: {name}\n"
            f"    user: backstop\n    password_secret: {secret.format(name=name)}\n    schedule: rate(1 day)\n"
        )
        if targets:
            entry += (
                f"    restore_targets:\n      staging:\n        host: {name}-staging.example.internal\n"
                f"        password_secret: {secret.format(name=name + '-staging')}\n"
            )
        entries.append(entry)
    return "bucket: backstop-many\ndatabases:\n" + "".join(entries)


@dataclass(frozen=True)
class Synthesized:
    """The example app after synthesis: its stack, the template for assertions, and the raw JSON."""

    app: App
    stack: BackstopStack
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template.to_json()["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, Any]:
        """Resources of one CloudFormation type, by logical id."""
        return {k: r for k, r in self.resources.items() if r["Type"] == resource_type}

    def one(self, resource_type: str, prefix: str) -> tuple[str, dict[str, Any]]:
        """The one resource of ``resource_type`` whose logical id starts with ``prefix`` (its construct path)."""
        (match,) = [(k, r) for k, r in self.of_type(resource_type).items() if k.startswith(prefix)]
        return match

    def properties(self, logical_id: str) -> dict[str, Any]:
        """The Properties of the resource ``logical_id``, as written."""
        props: dict[str, Any] = self.resources[logical_id]["Properties"]
        return props

    def function_running(self, handler: str) -> tuple[str, dict[str, Any]]:
        """The logical id and properties of the one function running ``backstop.handlers.<handler>``."""
        (found,) = [
            (logical_id, r["Properties"])
            for logical_id, r in self.of_type("AWS::Lambda::Function").items()
            if r["Properties"]["ImageConfig"]["Command"] == [f"backstop.handlers.{handler}.handler"]
        ]
        return found

    def environment(self, prefix: str) -> dict[str, Any]:
        """The environment variables of the one function whose logical id starts with ``prefix``, as written."""
        _, function = self.one("AWS::Lambda::Function", prefix)
        variables: dict[str, Any] = function["Properties"]["Environment"]["Variables"]
        return variables

    def schedule(self, described: str) -> dict[str, Any]:
        """The properties of the one schedule whose description contains ``described``."""
        (found,) = [
            r["Properties"]
            for r in self.of_type("AWS::Scheduler::Schedule").values()
            if described in r["Properties"]["Description"]
        ]
        return dict(found)

    def alarms(self) -> dict[str, dict[str, Any]]:
        """The alarms' properties by alarm name, without the stack name prefix."""
        return {
            r["Properties"]["AlarmName"].removeprefix("Backstop-"): r["Properties"]
            for r in self.of_type("AWS::CloudWatch::Alarm").values()
        }

    def bucket_policy(self, bucket_id: str) -> list[dict[str, Any]]:
        """The statements of the bucket policy on the bucket ``bucket_id``, as written."""
        for policy in self.of_type("AWS::S3::BucketPolicy").values():
            if policy["Properties"]["Bucket"] == {"Ref": bucket_id}:
                statements: list[dict[str, Any]] = policy["Properties"]["PolicyDocument"]["Statement"]
                return statements
        raise AssertionError(f"no bucket policy for {bucket_id}")

    def catalog(self) -> dict[str, str]:
        """The database catalog's parameters (``backstop.config.catalog``): value by part name."""
        parameters = self.of_type("AWS::SSM::Parameter").values()
        return {p["Properties"]["Name"].rsplit("/", 1)[1]: p["Properties"]["Value"] for p in parameters}

    def catalog_databases(self) -> dict[str, dict[str, Any]]:
        """The databases the catalog holds, as JSON objects by name."""
        return {name: db for value in self.catalog().values() for name, db in json.loads(value).items()}

    def statements_of_role(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement of the identity policies attached to the role ``role_id``, intrinsics flattened."""
        return [
            flatten(statement)
            for policy in self.of_type("AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"]["Roles"]
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        ]

    def role_statements(self, prefix: str) -> list[dict[str, Any]]:
        """Every identity statement of the one role whose logical id starts with ``prefix``, intrinsics flattened."""
        role_id, _ = self.one("AWS::IAM::Role", prefix)
        return self.statements_of_role(role_id)


def listed(value: Any) -> list[Any]:
    """A policy element that IAM takes as one value or a list (Action, Resource), as a list."""
    return value if isinstance(value, list) else [value]


def flatten(value: Any) -> Any:
    """``value`` with Fn::Join, Fn::GetAtt and Ref written as text: ``<Bucket.Arn>/backups/*``."""
    if isinstance(value, list):
        return [flatten(v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return separator.join(str(flatten(p)) for p in parts)
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attribute = value["Fn::GetAtt"]
        return f"<{logical_id}.{attribute}>"
    if set(value) == {"Ref"}:
        return f"<{value['Ref']}>"
    return {k: flatten(v) for k, v in value.items()}


def synthesize(config: Path, outdir: Path) -> Synthesized:
    """Build and synthesize the app for ``config`` with the cdk.json context, writing into ``outdir``."""
    app = App(context={**CDK_CONTEXT, "config": str(config)}, outdir=str(outdir))
    stack = build(app)
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack))


def synthesize_text(text: str, directory: Path) -> Synthesized:
    """The app of the configuration ``text``, written as ``directory/backstop.yaml``, synthesized into
    ``directory/cdk.out``."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "backstop.yaml"
    config.write_text(text, encoding="utf-8")
    return synthesize(config, directory / "cdk.out")


@cache
def synthesized_example(outdir: Path) -> Synthesized:
    """The example configuration's app, synthesized once per process whichever module asks first."""
    return synthesize(EXAMPLE_CONFIG, outdir)


@cache
def synthesized_servers(outdir: Path) -> Synthesized:
    """The app of ``SERVERS_CONFIG``, synthesized once per process."""
    outdir.mkdir(parents=True, exist_ok=True)
    config = outdir / "servers.yaml"
    config.write_text(SERVERS_CONFIG, encoding="utf-8")
    return synthesize(config, outdir / "cdk.out")


def aws_solutions_findings(scope: IConstruct) -> list[str]:
    """What the AwsSolutions cdk-nag pack finds unacknowledged in ``scope``, one line a finding: rule, severity,
    construct paths; a report that fails without naming a violation is a finding too."""
    report = AwsSolutionsChecks().validate_scope(scope)
    found = [
        f"{v.rule_name} ({v.severity}) on {', '.join(str(r.construct_path) for r in v.violating_resources)}"
        for v in report.violations
    ]
    return found if found or report.success else [f"the AwsSolutions pack failed on {scope.node.path}"]


def cfn_lint(directory: Path, **templates: Template) -> subprocess.CompletedProcess[str]:
    """cfn-lint run over ``templates``, each written as ``directory/<name>.template.json``."""
    paths = []
    for name, template in templates.items():
        path = directory / f"{name}.template.json"
        path.write_text(json.dumps(template.to_json(), indent=1), encoding="utf-8")
        paths.append(str(path))
    return subprocess.run([str(CFN_LINT), "--format", "parseable", *paths], capture_output=True, text=True)


# -- bucket policies, played against requests -----------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    principal: str
    action: str
    key: str | None = None
    """The object key; None for a bucket-level action."""
    context: dict[str, Any] = field(default_factory=dict)
    """Condition keys the request carries (absent keys are absent: ``Null`` sees them as null)."""


def like(pattern: str, value: str) -> bool:
    """IAM wildcard matching (``*`` any run of characters, ``/`` included; ``?`` one character)."""
    return (
        re.fullmatch("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), value)
        is not None
    )


def _lower(values: Any) -> list[str]:
    return [str(e).lower() for e in listed(values)]


# Each operator: does the condition hold, given whether the request carries the key and its value.
# A negated operator holds for a key the request does not carry (it equals nothing).
_OPERATORS: dict[str, Callable[[bool, str, Any], bool]] = {
    "Null": lambda present, _value, expected: ("true" in _lower(expected)) != present,
    "Bool": lambda present, value, expected: present and value.lower() in _lower(expected),
    "ArnNotLike": lambda present, value, expected: not (present and any(like(e, value) for e in listed(expected))),
    "ArnLike": lambda present, value, expected: present and any(like(e, value) for e in listed(expected)),
    "StringLikeIfExists": lambda present, value, expected: not present or any(like(e, value) for e in listed(expected)),
    "StringEquals": lambda present, value, expected: present and value in listed(expected),
    "StringNotEquals": lambda present, value, expected: not (present and value in listed(expected)),
}
KNOWN_OPERATORS = frozenset(_OPERATORS)
"""The condition operators the evaluator knows: a policy that uses another one fails the test using it."""


def condition_holds(condition: dict[str, Any], request: Request) -> bool:
    """Whether every operator and key of a statement's ``condition`` holds for ``request``."""
    context = {"aws:PrincipalArn": request.principal, **request.context}
    for operator, entries in condition.items():
        if operator not in _OPERATORS:
            raise AssertionError(f"the evaluator does not know the condition operator {operator}")
        for name, expected in entries.items():
            if not _OPERATORS[operator](name in context, str(context.get(name, "")), expected):
                return False
    return True


def enforces_tls(statement: dict[str, Any]) -> bool:
    """Whether ``statement`` is one of the TLS statements CDK adds (enforce_ssl, minimum_tls_version): every
    request played here uses TLS 1.2+."""
    condition = str(statement.get("Condition"))
    return "aws:SecureTransport" in condition or "s3:TlsVersion" in condition


def applies(statement: dict[str, Any], request: Request, bucket_arn: str) -> bool:
    """Whether a flattened bucket policy ``statement`` covers ``request`` on the bucket ``bucket_arn``: its
    actions, its resources and its condition (not its principal)."""
    resource = bucket_arn + (f"/{request.key}" if request.key is not None else "")
    return (
        any(like(a.lower(), request.action.lower()) for a in listed(statement["Action"]))
        and any(like(r, resource) for r in listed(statement["Resource"]))
        and condition_holds(statement.get("Condition", {}), request)
    )
