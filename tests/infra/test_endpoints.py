"""VPC endpoints in the synthesized stack: per VPC with ``create_endpoints``, exactly what its functions need.

The fleet below has three VPCs that create their endpoints and one database outside any VPC:

- vpc-0aaaaaaaaaaaaaaaa: billing (postgres, a secret, a server drill, restore targets) and ledger (postgres,
  no secret, its own security group): backups, a drill and the restore function;
- vpc-0bbbbbbbbbbbbbbbb: shop (mysql, a secret): a backup only;
- vpc-0cccccccccccccccc: orders (sqlite on EFS, drilled into /tmp): a backup only, and no secret.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backstop.config import parse_config
from infra.endpoints import ENDPOINTS, endpoint_plans, functions_in_vpcs
from infra.restore_workflow import RESTORE_HANDLER
from infra.runner import BACKUP_HANDLER, DRILL_HANDLER
from tests.infra import Synthesized, aws_solutions_findings, cfn_lint, flatten, many_databases, synthesize_text

pytestmark = pytest.mark.xdist_group("infra")

SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/{}-AbCdEf"
VPC_A, VPC_B, VPC_C = "vpc-0aaaaaaaaaaaaaaaa", "vpc-0bbbbbbbbbbbbbbbb", "vpc-0cccccccccccccccc"
SG_BILLING, SG_LEDGER, SG_SHOP, SG_ORDERS = (
    "sg-0a0000000000000a1",
    "sg-0a0000000000000a2",
    "sg-0b0000000000000b1",
    "sg-0c0000000000000c1",
)


def vpc(vpc_id: str, subnets: list[str], groups: list[str], *, create: bool = True, **extra: Any) -> str:
    settings: dict[str, Any] = {"subnet_ids": subnets, "security_group_ids": groups, "vpc_id": vpc_id}
    if create:
        settings |= {"create_endpoints": True, "route_table_ids": [vpc_id.replace("vpc-", "rtb-")]}
    return json.dumps(settings | extra)


SUBNETS_A = ["subnet-0a000000000000001", "subnet-0a000000000000002"]
FLEET = f"""\
bucket: backstop-endpoints
databases:
  - name: billing
    engine: postgres
    host: billing.example.internal
    dbname: billing
    user: backstop
    password_secret: {SECRET.format("billing")}
    vpc: {vpc(VPC_A, SUBNETS_A, [SG_BILLING])}
    drill:
      server: {{host: scratch.example.internal, user: backstop, password_secret: {SECRET.format("scratch")}}}
    restore_targets:
      staging: {{host: billing-staging.example.internal}}
  - name: ledger
    engine: postgres
    host: ledger.example.internal
    dbname: ledger
    user: backstop
    vpc: {vpc(VPC_A, SUBNETS_A, [SG_LEDGER])}
  - name: shop
    engine: mysql
    host: shop.example.internal
    dbname: shop
    user: backstop
    password_secret: {SECRET.format("shop")}
    vpc: {vpc(VPC_B, ["subnet-0b000000000000001"], [SG_SHOP])}
  - name: orders
    engine: sqlite
    path: /mnt/data/orders.db
    vpc: {vpc(VPC_C, ["subnet-0c000000000000001", "subnet-0c000000000000002"], [SG_ORDERS])}
    efs: {{file_system_id: fs-0123456789abcdef0, access_point_id: fsap-0123456789abcdef0, mount_path: /mnt/data}}
  - name: web
    engine: mysql
    host: web.example.internal
    dbname: web
    user: backstop
    password_secret: {SECRET.format("web")}
"""
GATEWAYS_AND_INTERFACES = {
    VPC_A: ({"s3", "dynamodb"}, {"sns", "secretsmanager", "states", "kms", "ssm"}),
    VPC_B: ({"s3"}, {"sns", "secretsmanager"}),
    VPC_C: ({"s3"}, {"sns"}),
}
NO_VPC_HANDLERS = ("freshness", "sweep", "retention_guard", "failure_alert", "approval")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize_text(FLEET, tmp_path_factory.mktemp("endpoints"))


def endpoints_by_vpc(synthesized: Synthesized) -> dict[str, dict[str, dict[str, Any]]]:
    """Per VPC id, its endpoints' properties by service name (the last part of ServiceName)."""
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for resource in synthesized.of_type("AWS::EC2::VPCEndpoint").values():
        props = flatten(resource["Properties"])
        assert props["ServiceName"].startswith("com.amazonaws.<AWS::Region>.")
        service = props["ServiceName"].rsplit(".", 1)[1]
        assert service not in found.setdefault(props["VpcId"], {}), f"two {service} endpoints in {props['VpcId']}"
        found[props["VpcId"]][service] = props
    return found


def security_groups_by_vpc(synthesized: Synthesized) -> dict[str, tuple[str, dict[str, Any]]]:
    groups = {}
    for logical_id, resource in synthesized.of_type("AWS::EC2::SecurityGroup").items():
        props = resource["Properties"]
        assert props["VpcId"] not in groups, f"two endpoint security groups in {props['VpcId']}"
        groups[props["VpcId"]] = (logical_id, props)
    return groups


def test_each_vpc_gets_exactly_the_endpoints_its_functions_need(fleet: Synthesized) -> None:
    found = endpoints_by_vpc(fleet)

    assert {
        vpc_id: (
            {s for s, p in endpoints.items() if p["VpcEndpointType"] == "Gateway"},
            {s for s, p in endpoints.items() if p["VpcEndpointType"] == "Interface"},
        )
        for vpc_id, endpoints in found.items()
    } == GATEWAYS_AND_INTERFACES


def test_a_backup_only_vpc_gets_no_dynamodb_step_functions_kms_or_ssm_endpoint(fleet: Synthesized) -> None:
    found = endpoints_by_vpc(fleet)

    for vpc_id in (VPC_B, VPC_C):
        assert not {"dynamodb", "states", "kms", "ssm"} & set(found[vpc_id])
    assert "secretsmanager" not in found[VPC_C]  # orders reads no password


def test_gateways_use_the_route_tables_and_interfaces_the_subnets_with_private_dns(fleet: Synthesized) -> None:
    found = endpoints_by_vpc(fleet)
    groups = security_groups_by_vpc(fleet)

    for vpc_id, endpoints in found.items():
        group_id, _ = groups[vpc_id]
        for props in endpoints.values():
            if props["VpcEndpointType"] == "Gateway":
                assert props["RouteTableIds"] == [vpc_id.replace("vpc-", "rtb-")]
                assert "SubnetIds" not in props and "SecurityGroupIds" not in props
            else:
                assert props["PrivateDnsEnabled"] is True
                assert props["SecurityGroupIds"] == [f"<{group_id}.GroupId>"]
            assert "PolicyDocument" not in props  # the default policy (docs/deploy.md says why)
    # billing and ledger share one set of endpoints, in the subnets both name
    assert found[VPC_A]["sns"]["SubnetIds"] == SUBNETS_A


def test_the_endpoints_security_group_lets_in_only_https_from_the_function_security_groups(
    fleet: Synthesized,
) -> None:
    groups = security_groups_by_vpc(fleet)

    ingress = {
        vpc_id: sorted(
            (rule["IpProtocol"], rule["FromPort"], rule["ToPort"], rule["SourceSecurityGroupId"])
            for rule in props["SecurityGroupIngress"]
        )
        for vpc_id, (_, props) in groups.items()
    }
    assert ingress == {
        VPC_A: [("tcp", 443, 443, SG_BILLING), ("tcp", 443, 443, SG_LEDGER)],
        VPC_B: [("tcp", 443, 443, SG_SHOP)],
        VPC_C: [("tcp", 443, 443, SG_ORDERS)],
    }
    for _, props in groups.values():
        assert not [rule for rule in props["SecurityGroupIngress"] if "CidrIp" in rule or "CidrIpv6" in rule]
        # no egress: the one rule CDK writes for "none" matches no traffic
        assert props["SecurityGroupEgress"] == [
            {
                "CidrIp": "255.255.255.255/32",
                "Description": "Disallow all traffic",
                "FromPort": 252,
                "IpProtocol": "icmp",
                "ToPort": 86,
            }
        ]


def test_endpoints_follow_where_the_stack_really_places_each_function(fleet: Synthesized) -> None:
    # given the functions the template puts in a VPC, by handler and security groups
    in_template = sorted(
        (props["ImageConfig"]["Command"][0], tuple(props["VpcConfig"]["SecurityGroupIds"]))
        for props in (r["Properties"] for r in fleet.of_type("AWS::Lambda::Function").values())
        if "VpcConfig" in props
    )
    handlers = {"backup": BACKUP_HANDLER, "drill": DRILL_HANDLER, "restore": RESTORE_HANDLER}

    # when the endpoints' own view of the placement is asked
    predicted = sorted((handlers[f.kind], f.vpc.security_group_ids) for f in functions_in_vpcs(parse_config(FLEET)))

    # then both agree: an endpoint is planned for every function in a VPC, and only those
    assert in_template == predicted
    assert {kind for kind, _ in predicted} == set(handlers.values()) == {handlers[k] for k in ENDPOINTS}


@pytest.mark.parametrize("handler", NO_VPC_HANDLERS)
def test_functions_that_reach_no_database_are_never_placed_in_a_vpc(fleet: Synthesized, handler: str) -> None:
    functions = [
        props
        for props in (r["Properties"] for r in fleet.of_type("AWS::Lambda::Function").values())
        if props["ImageConfig"]["Command"] == [f"backstop.handlers.{handler}.handler"]
    ]

    assert functions  # every database here is in a VPC, and still:
    assert all("VpcConfig" not in props and "FileSystemConfigs" not in props for props in functions)


def test_a_file_drill_into_tmp_is_outside_the_vpc_so_its_vpc_needs_no_dynamodb(fleet: Synthesized) -> None:
    drill = fleet.one("AWS::Lambda::Function", "VerificationDrillordersFunction")[1]["Properties"]

    assert "VpcConfig" not in drill
    assert "dynamodb" not in endpoints_by_vpc(fleet)[VPC_C]


def test_no_endpoint_or_security_group_without_create_endpoints(example: Synthesized) -> None:
    assert example.of_type("AWS::EC2::VPCEndpoint") == {}
    assert example.of_type("AWS::EC2::SecurityGroup") == {}


def test_a_vpc_named_without_create_endpoints_gets_none(tmp_path: Path) -> None:
    # given the fleet with VPC B's endpoints turned off (the VPC still named)
    text = FLEET.replace(
        vpc(VPC_B, ["subnet-0b000000000000001"], [SG_SHOP]),
        vpc(VPC_B, ["subnet-0b000000000000001"], [SG_SHOP], create=False),
    )
    found = endpoints_by_vpc(synthesize_text(text, tmp_path))

    assert set(found) == {VPC_A, VPC_C}


def test_endpoint_subnet_ids_replace_the_databases_subnets_for_the_interfaces() -> None:
    one_per_zone = ["subnet-0a0000000000000e1", "subnet-0a0000000000000e2"]
    text = FLEET.replace(
        vpc(VPC_A, SUBNETS_A, [SG_BILLING]), vpc(VPC_A, SUBNETS_A, [SG_BILLING], endpoint_subnet_ids=one_per_zone)
    ).replace(vpc(VPC_A, SUBNETS_A, [SG_LEDGER]), vpc(VPC_A, SUBNETS_A, [SG_LEDGER], endpoint_subnet_ids=one_per_zone))

    (plan,) = [p for p in endpoint_plans(parse_config(text)) if p.vpc_id == VPC_A]

    assert plan.subnet_ids == tuple(one_per_zone)


def test_a_restore_that_reads_no_secret_needs_no_secrets_manager_endpoint() -> None:
    config = parse_config(
        "bucket: backstop-endpoints\ndatabases:\n  - name: orders\n    engine: sqlite\n    path: /mnt/data/orders.db\n"
        f"    vpc: {vpc(VPC_C, ['subnet-0c000000000000001'], [SG_ORDERS])}\n"
        "    efs: {file_system_id: fs-0123456789abcdef0, access_point_id: fsap-0123456789abcdef0, "
        "mount_path: /mnt/data}\n    restore_targets: {staging: {path: /mnt/data/staging.db}}\n"
    )

    (plan,) = endpoint_plans(config)

    assert [s.name for s in plan.services] == ["s3", "dynamodb", "sns", "states", "kms", "ssm"]


def test_the_endpoints_pass_aws_solutions_checks(fleet: Synthesized) -> None:
    assert aws_solutions_findings(fleet.stack) == []


def test_the_endpoints_pass_cfn_lint(fleet: Synthesized, tmp_path: Path) -> None:
    result = cfn_lint(tmp_path, Backstop=fleet.template)

    assert result.stdout + result.stderr == ""
    assert result.returncode == 0


def test_databases_sharing_a_vpc_add_one_set_of_endpoints_not_one_per_database(tmp_path: Path) -> None:
    # given twelve backups in one VPC that creates its endpoints
    network = vpc("vpc-0123456789abcdef0", ["subnet-0123456789abcdef0"], ["sg-0123456789abcdef0"])
    text = many_databases(12, targets=False).replace(
        "    schedule: rate(1 day)\n", f"    schedule: rate(1 day)\n    vpc: {network}\n"
    )

    # when synthesized (check_limits included)
    synthesized = synthesize_text(text, tmp_path)

    # then one set: S3, SNS and Secrets Manager, and one security group letting in their one security group
    assert len(synthesized.of_type("AWS::EC2::VPCEndpoint")) == 3
    ((_, group),) = synthesized.of_type("AWS::EC2::SecurityGroup").items()
    assert len(group["Properties"]["SecurityGroupIngress"]) == 1
