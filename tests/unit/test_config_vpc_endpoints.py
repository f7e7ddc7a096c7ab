"""``vpc.create_endpoints``: what it needs, and one set of endpoint settings per VPC, each refusal one sentence
naming file, line and field."""

from __future__ import annotations

import pytest

from backstop.config import parse_config
from tests.unit.test_config_refusals import HEAD, postgres, refusal

SUBNET = "subnet-0123456789abcdef0"
ENDPOINTS = (
    "vpc_id: vpc-0123456789abcdef0",
    "create_endpoints: true",
    "route_table_ids: [rtb-0123456789abcdef0]",
)


def in_vpc(name: str, *settings: str, subnet: str = SUBNET) -> str:
    """A postgres database whose ``vpc`` block has ``settings`` besides its subnet and security group."""
    return postgres(
        name,
        name,
        "vpc:",
        f"  subnet_ids: [{subnet}]",
        "  security_group_ids: [sg-0123456789abcdef0]",
        *(f"  {line}" for line in settings),
    )


def test_endpoint_settings_load_and_default_to_none() -> None:
    config = parse_config(HEAD + in_vpc("app", *ENDPOINTS) + in_vpc("plain", subnet="subnet-0fedcba9876543210"))

    created, plain = (db.vpc for db in config.databases)
    assert created is not None and plain is not None
    assert created.create_endpoints and created.vpc_id == "vpc-0123456789abcdef0"
    assert created.route_table_ids == ("rtb-0123456789abcdef0",) and created.endpoint_subnet_ids == ()
    assert not plain.create_endpoints and plain.vpc_id is None and plain.route_table_ids == ()


@pytest.mark.parametrize(
    ("left_out", "named"),
    [
        ("vpc_id", "needs vpc_id (the VPC the endpoints go in): add it"),
        ("route_table_ids", "needs route_table_ids (its subnets' route tables, for the S3 and DynamoDB gateways)"),
    ],
)
def test_create_endpoints_without_its_vpc_or_route_tables_is_refused(left_out: str, named: str) -> None:
    settings = [line for line in ENDPOINTS if not line.startswith(left_out)]

    message = refusal(HEAD + in_vpc("app", *settings))

    line = 11 if left_out == "vpc_id" else 12  # the create_endpoints line
    assert f"backstop.yaml:{line}: databases[0].vpc.create_endpoints: create_endpoints {named}" in message


def test_create_endpoints_alone_names_both_missing_fields() -> None:
    message = refusal(HEAD + in_vpc("app", "create_endpoints: true"))

    assert "backstop.yaml:11: databases[0].vpc.create_endpoints: create_endpoints needs vpc_id" in message
    assert "and route_table_ids" in message and message.endswith("add them")


@pytest.mark.parametrize("field", ["route_table_ids: [rtb-0123456789abcdef0]", f"endpoint_subnet_ids: [{SUBNET}]"])
def test_endpoint_places_without_create_endpoints_are_refused(field: str) -> None:
    name = field.split(":")[0]

    message = refusal(HEAD + in_vpc("app", "vpc_id: vpc-0123456789abcdef0", field))

    assert f"backstop.yaml:12: databases[0].vpc.{name}: {name} is used only by create_endpoints: true" in message


@pytest.mark.parametrize(
    ("field", "shown"),
    [
        ("vpc_id: vpc-12", "'vpc-12' is not a VPC id"),
        ("route_table_ids: [rtb-xyz]", "'rtb-xyz' is not a route table id"),
        ("route_table_ids: [rtb-0123456789abcdef0, rtb-0123456789abcdef0]", "list each id once"),
        ("endpoint_subnet_ids: [sg-0123456789abcdef0]", "is not a subnet id"),
    ],
)
def test_malformed_endpoint_ids_are_refused(field: str, shown: str) -> None:
    message = refusal(HEAD + in_vpc("app", field))

    assert "backstop.yaml:11: databases[0].vpc." in message and shown in message


def test_two_databases_naming_one_vpc_with_other_endpoint_settings_are_refused() -> None:
    # given orders creating the endpoints of vpc-0123456789abcdef0, and billing in that VPC without them
    # (its vpc block starts on line 20)
    text = HEAD + in_vpc("orders", *ENDPOINTS) + in_vpc("billing", "vpc_id: vpc-0123456789abcdef0")

    message = refusal(text)

    assert "backstop.yaml:20: databases[1].vpc: vpc-0123456789abcdef0 is also the VPC of databases[0], with other " in (
        message
    )
    assert "a VPC's endpoints are created once, so write the same settings in both" in message


def test_two_databases_naming_one_vpc_with_other_route_tables_are_refused() -> None:
    other = [line.replace("rtb-0123456789abcdef0", "rtb-0fedcba9876543210") for line in ENDPOINTS]

    message = refusal(HEAD + in_vpc("orders", *ENDPOINTS) + in_vpc("billing", *other))

    assert "databases[1].vpc: vpc-0123456789abcdef0 is also the VPC of databases[0]" in message


def test_a_database_on_a_subnet_of_a_vpc_with_endpoints_must_name_that_vpc() -> None:
    # given billing on orders' subnet without a vpc_id: the endpoints' security group would not let it in
    message = refusal(HEAD + in_vpc("orders", *ENDPOINTS) + in_vpc("billing"))

    assert f"backstop.yaml:20: databases[1].vpc: {SUBNET} is also a subnet of databases[0], whose vpc_id is " in (
        message
    )
    assert "write vpc_id: vpc-0123456789abcdef0 and the same endpoint settings in both" in message


def test_databases_sharing_a_vpc_with_the_same_endpoint_settings_load() -> None:
    shuffled = (
        "vpc_id: vpc-0123456789abcdef0",
        "create_endpoints: true",
        "route_table_ids: [rtb-0fedcba9876543210, rtb-0123456789abcdef0]",
    )
    same = (*ENDPOINTS[:2], "route_table_ids: [rtb-0123456789abcdef0, rtb-0fedcba9876543210]")

    config = parse_config(HEAD + in_vpc("orders", *same) + in_vpc("billing", *shuffled, subnet="subnet-0a1b2c3d"))

    assert [db.name for db in config.databases] == ["orders", "billing"]


def test_databases_on_one_subnet_without_any_vpc_id_still_load() -> None:
    config = parse_config(HEAD + in_vpc("orders") + in_vpc("billing"))

    assert len(config.databases) == 2
