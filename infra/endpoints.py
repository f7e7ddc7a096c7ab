"""VPC endpoints: what the functions placed in a VPC need to reach AWS there, created when ``vpc.create_endpoints``.

``ENDPOINTS`` is the one table of which function needs which service (docs/deploy.md shows it); which
functions run in which VPC follows the constructs that place them (``functions_in_vpcs``, kept equal to
the template by a test). Per VPC with ``create_endpoints: true``: a gateway endpoint on the configured
route tables for S3 and DynamoDB (free), an interface endpoint with private DNS for every other service
(one network interface per subnet, that is per availability zone), and one security group for those
interfaces that lets in HTTPS from the security groups of the functions in that VPC, and nothing else.

Endpoint policies are the default (full access): a gateway endpoint carries every S3 or DynamoDB request
of its route tables, and private DNS sends every request of the VPC for the service to its interface
endpoint, so a policy naming Backstop's resources would cut off anything else running there. What the
functions may do is bounded by their roles and the vault's bucket and key policies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from aws_cdk import Aws
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from backstop.config import Config, FileDrill, FilesDatabase, ServerDatabase, ServerDrill, SqliteDatabase, Vpc
from backstop.config.targets import resolve_target

FunctionKind = Literal["backup", "drill", "restore"]


@dataclass(frozen=True)
class EndpointService:
    """An AWS service as a VPC endpoint: ``com.amazonaws.<region>.<name>``, a gateway or an interface."""

    name: str
    title: str
    """Its name in the docs, and its construct id (stable: renaming one replaces the endpoint)."""
    gateway: bool = False


S3 = EndpointService("s3", "S3", gateway=True)
DYNAMODB = EndpointService("dynamodb", "DynamoDB", gateway=True)
SNS = EndpointService("sns", "SNS")
SECRETS_MANAGER = EndpointService("secretsmanager", "SecretsManager")
STEP_FUNCTIONS = EndpointService("states", "StepFunctions")
KMS = EndpointService("kms", "KMS")
SSM = EndpointService("ssm", "SSM")
SERVICES = (S3, DYNAMODB, SNS, SECRETS_MANAGER, STEP_FUNCTIONS, KMS, SSM)
"""Every service an endpoint is created for, in the order they are created."""


@dataclass(frozen=True)
class EndpointNeeds:
    """The services one kind of function calls: always, and when it reads a password secret."""

    always: tuple[EndpointService, ...]
    with_secret: tuple[EndpointService, ...] = (SECRETS_MANAGER,)


ENDPOINTS: dict[FunctionKind, EndpointNeeds] = {
    # its backups and failure records (S3), alerts (SNS), the database's password (Secrets Manager, which
    # itself asks KMS to decrypt a secret under a customer key: the function never calls KMS)
    "backup": EndpointNeeds(always=(S3, SNS)),
    # the backup it restores and its drill record (S3), alerts, its audit record (DynamoDB), the drill
    # server's password
    "drill": EndpointNeeds(always=(S3, DYNAMODB, SNS)),
    # backups and safety snapshots, locks and audit, alerts, the targets' passwords, its execution's history
    # (Step Functions), the approval grant's MAC (KMS VerifyMac), the database catalog (SSM Parameter Store)
    "restore": EndpointNeeds(always=(S3, DYNAMODB, SNS, STEP_FUNCTIONS, KMS, SSM)),
}
"""Function kind -> the endpoints it needs in its VPC. The freshness, sweep, guard, failure-alert and approval
functions never run in a VPC, and need none."""


@dataclass(frozen=True)
class PlacedFunction:
    """A function the stack places in a database's VPC, and whether it reads a password secret there."""

    kind: FunctionKind
    database: str | None
    """The database it serves (none: the restore function serves every restorable one)."""
    vpc: Vpc
    reads_secret: bool

    @property
    def services(self) -> tuple[EndpointService, ...]:
        needs = ENDPOINTS[self.kind]
        return needs.always + (needs.with_secret if self.reads_secret else ())


def functions_in_vpcs(config: Config) -> list[PlacedFunction]:
    """Every function in a VPC, as ScheduledBackups, Verification and RestoreWorkflow place them.

    - a database's backup: in its ``vpc``;
    - its drill: in its ``vpc`` for a server drill, or a file drill whose scratch ``path`` is on EFS (a file
      drill into /tmp reads S3 alone and runs outside any VPC);
    - the restore function: in the restorable databases' ``vpc`` (the workflow refuses more than one).
    """
    placed: list[PlacedFunction] = []
    for db in config.databases:
        if db.vpc is None:
            continue
        secret = isinstance(db, ServerDatabase) and db.password_secret is not None
        placed.append(PlacedFunction("backup", db.name, db.vpc, reads_secret=secret))
        drill = db.drill
        # a file drill needs the VPC only to mount its own scratch directory on EFS
        scratch_on_efs = (
            isinstance(drill, FileDrill)
            and drill.path is not None
            and isinstance(db, SqliteDatabase | FilesDatabase)
            and db.efs is not None
        )
        if isinstance(drill, ServerDrill) or scratch_on_efs:
            drill_secret = isinstance(drill, ServerDrill) and drill.server.password_secret is not None
            placed.append(PlacedFunction("drill", db.name, db.vpc, reads_secret=drill_secret))
    restorable = [db for db in config.databases if db.restore_targets]
    vpc = next((db.vpc for db in restorable if db.vpc is not None), None)
    if vpc is not None:
        secret = any(
            isinstance(target, ServerDatabase) and target.password_secret is not None
            for db in restorable
            for target in [db, *(resolve_target(db, name, o) for name, o in db.restore_targets.items())]
        )
        placed.append(PlacedFunction("restore", None, vpc, reads_secret=secret))
    return placed


@dataclass(frozen=True)
class VpcEndpointPlan:
    """The endpoints of one VPC: which services, where, and whose security groups may reach them."""

    vpc_id: str
    route_table_ids: tuple[str, ...]
    subnet_ids: tuple[str, ...]
    """Where the interface endpoints' network interfaces go: one subnet per availability zone."""
    function_security_group_ids: tuple[str, ...]
    services: tuple[EndpointService, ...]

    @property
    def gateways(self) -> tuple[EndpointService, ...]:
        return tuple(s for s in self.services if s.gateway)

    @property
    def interfaces(self) -> tuple[EndpointService, ...]:
        return tuple(s for s in self.services if not s.gateway)


def endpoint_plans(config: Config) -> list[VpcEndpointPlan]:
    """Per VPC with ``create_endpoints: true`` (in the order the file first names it), the endpoints its functions
    need. The configuration has checked that every database naming the VPC writes the same endpoint settings."""
    by_vpc: dict[str, list[PlacedFunction]] = {}
    for function in functions_in_vpcs(config):
        if function.vpc.create_endpoints and function.vpc.vpc_id is not None:
            by_vpc.setdefault(function.vpc.vpc_id, []).append(function)
    plans = []
    for vpc_id, functions in by_vpc.items():
        settings = functions[0].vpc
        needed = {service for function in functions for service in function.services}
        subnets = settings.endpoint_subnet_ids or _in_order(s for f in functions for s in f.vpc.subnet_ids)
        plans.append(
            VpcEndpointPlan(
                vpc_id=vpc_id,
                route_table_ids=settings.route_table_ids,
                subnet_ids=subnets,
                function_security_group_ids=_in_order(g for f in functions for g in f.vpc.security_group_ids),
                services=tuple(s for s in SERVICES if s in needed),
            )
        )
    return plans


def _in_order(ids: Iterable[str]) -> tuple[str, ...]:
    """``ids`` once each, in the order first seen."""
    return tuple(dict.fromkeys(ids))


class VpcEndpoints(Construct):
    """The endpoints of every VPC whose databases set ``create_endpoints: true`` (nothing otherwise)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(scope, construct_id)
        self.plans = endpoint_plans(config)
        self.endpoints: dict[str, dict[str, ec2.CfnVPCEndpoint]] = {}
        """Per VPC id, its endpoints by service name."""
        for plan in self.plans:
            self.endpoints[plan.vpc_id] = self._endpoints_of(Construct(self, plan.vpc_id), plan)

    @staticmethod
    def _endpoints_of(scope: Construct, plan: VpcEndpointPlan) -> dict[str, ec2.CfnVPCEndpoint]:
        endpoints = {
            service.name: ec2.CfnVPCEndpoint(
                scope,
                service.title,
                vpc_id=plan.vpc_id,
                service_name=f"com.amazonaws.{Aws.REGION}.{service.name}",
                vpc_endpoint_type="Gateway",
                route_table_ids=list(plan.route_table_ids),
            )
            for service in plan.gateways
        }
        if not plan.interfaces:
            return endpoints
        # Written as the L1 resource: the L2 needs an IVpc (a look-up at synth, or the VPC's AZs in the config).
        group = ec2.CfnSecurityGroup(
            scope,
            "SecurityGroup",
            vpc_id=plan.vpc_id,
            group_description="Backstop VPC endpoints: HTTPS from the Backstop functions in this VPC only",
            security_group_ingress=[
                ec2.CfnSecurityGroup.IngressProperty(
                    ip_protocol="tcp",
                    from_port=443,
                    to_port=443,
                    source_security_group_id=group_id,
                    description=f"HTTPS from the Backstop functions of {group_id}",
                )
                for group_id in plan.function_security_group_ids
            ],
            # No egress: an endpoint's interfaces answer, they never open a connection. CDK's own way of
            # saying "none" (a rule that matches no traffic), since an empty list means "all" to EC2.
            security_group_egress=[
                ec2.CfnSecurityGroup.EgressProperty(
                    ip_protocol="icmp",
                    from_port=252,
                    to_port=86,
                    cidr_ip="255.255.255.255/32",
                    description="Disallow all traffic",
                )
            ],
        )
        for service in plan.interfaces:
            endpoints[service.name] = ec2.CfnVPCEndpoint(
                scope,
                service.title,
                vpc_id=plan.vpc_id,
                service_name=f"com.amazonaws.{Aws.REGION}.{service.name}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=list(plan.subnet_ids),
                security_group_ids=[group.attr_group_id],
            )
        return endpoints
