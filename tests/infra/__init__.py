"""Infrastructure tests: the synthesized template, its lifecycle rules, cdk-nag and cfn-lint.

``synthesized_example`` builds the app exactly as ``cdk synth`` does (``app.build`` with the context
of cdk.json) once per test process; every template test reads that one result. The infra modules
share the xdist group "infra", so under ``make unit`` that is one synthesis in total.
"""

from __future__ import annotations

import os

# jsii starts its Node process at the first `import aws_cdk` and reads this then, so it comes first.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from app import build
from infra.stack import BackstopStack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "backstop.yaml"
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]


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
