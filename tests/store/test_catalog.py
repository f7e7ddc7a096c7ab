"""The database catalog on (emulated) Parameter Store: what a deploy wrote comes back whole, and nothing else does.

The restore, sweep and guard functions read their databases here instead of from their environment
(Lambda's 4 KB). The catalog's digest, in the function's environment, binds it to the deploy: a
parameter changed, added or removed outside a deploy is refused, not used.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from pydantic import TypeAdapter

from backstop.adapters.parameter_store import ParameterCatalog
from backstop.config import AnyDatabase, Database
from backstop.config.catalog import STANDARD_BYTES, catalog_path, digest, parameters_of
from backstop.errors import ConfigError

REGION = "eu-west-1"
PATH = catalog_path("Backstop")
SECRET = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:backstop/{name}-AbCdEf"


def server(name: str, **extra: Any) -> AnyDatabase:
    return TypeAdapter(Database).validate_python(
        {
            "name": name,
            "engine": "postgres",
            "host": f"{name}.example.internal",
            "dbname": name,
            "user": "backstop",
            "password_secret": SECRET.format(name=name),
            "restore_targets": {
                "staging": {"host": f"{name}-staging.example.internal", "password_secret": SECRET.format(name=name)}
            },
            **extra,
        }
    )


@pytest.fixture
def ssm() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("ssm", region_name=REGION)


def deploy(ssm: Any, databases: list[AnyDatabase]) -> ParameterCatalog:
    """The catalog as the stack writes it, and the reader a function deployed with it builds."""
    parameters = parameters_of(databases)
    for part, value in parameters.items():
        ssm.put_parameter(Name=f"{PATH}/{part}", Value=value, Type="String")
    return ParameterCatalog(ssm, PATH, digest(parameters))


def test_a_hundred_and_fifty_databases_come_back_exactly_over_several_parts_and_pages(ssm: Any) -> None:
    # given 150 server databases with restore targets and retention of their own
    databases = [server(f"db{i:03d}", retention={"daily": 7 + i}) for i in range(150)]

    # when they are deployed and read back
    catalog = deploy(ssm, databases)
    parameters = ssm.get_parameters_by_path(Path=PATH)["Parameters"]

    # then every database is there, equal to what was configured; the parts are standard-sized and
    # more than one page of Parameter Store's answer (10 a page)
    assert catalog.databases() == tuple(databases)
    values = parameters_of(databases).values()
    assert len(values) > 10
    assert all(len(v.encode()) <= STANDARD_BYTES for v in values)
    assert len(parameters) == 10  # the first page only: the reader followed the rest


def test_a_database_larger_than_a_standard_parameter_has_a_part_of_its_own(ssm: Any) -> None:
    queries = [f"SELECT count(*) FROM table_{i:03d}_with_a_rather_long_name" for i in range(90)]
    big = server("big", validation_queries=queries)
    databases = [server("alpha"), big, server("omega")]

    parameters = parameters_of(databases)

    assert [sorted(json.loads(v)) for v in parameters.values()] == [["alpha"], ["big"], ["omega"]]
    assert STANDARD_BYTES < len(parameters["001"].encode()) <= 8192
    assert deploy(ssm, databases).databases() == tuple(databases)


@pytest.mark.parametrize("tamper", ["changed", "added", "removed"])
def test_a_catalog_changed_outside_a_deploy_is_refused(ssm: Any, tamper: str) -> None:
    # given a deployed catalog, then a parameter changed, added or removed by someone with ssm:PutParameter:
    # redirecting billing's staging restore to a host of theirs, or adding a database, or dropping one
    catalog = deploy(ssm, [server(f"db{i}") for i in range(3)] + [server("billing")])
    if tamper == "changed":
        (part,) = [p["Name"] for p in ssm.get_parameters_by_path(Path=PATH)["Parameters"]]
        value = ssm.get_parameter(Name=part)["Parameter"]["Value"].replace(
            "billing-staging.example.internal", "attacker.example.com"
        )
        ssm.put_parameter(Name=part, Value=value, Type="String", Overwrite=True)
    elif tamper == "added":
        ssm.put_parameter(Name=f"{PATH}/999", Value=json.dumps({"x": {}}), Type="String")
    else:
        ssm.delete_parameter(Name=f"{PATH}/000")

    # when a function deployed with the original reads it, then it refuses in one sentence and uses nothing
    with pytest.raises(ConfigError, match=r"is not the one this function was deployed with.*deploy again"):
        catalog.databases()


def test_an_unreadable_catalog_says_why(ssm: Any) -> None:
    stubbed = boto3.client("ssm", region_name=REGION)
    with Stubber(stubbed) as stubber:
        stubber.add_client_error(
            "get_parameters_by_path", service_error_code="AccessDeniedException", service_message="not allowed"
        )
        with pytest.raises(ConfigError, match=rf"The database catalog {PATH} cannot be read \(AccessDenied"):
            ParameterCatalog(stubbed, PATH, "0" * 64).databases()


def test_the_digest_covers_names_and_values_without_ambiguity() -> None:
    assert digest({"a": "bc"}) != digest({"ab": "c"})
    assert digest({"000": "x", "001": "y"}) != digest({"000": "y", "001": "x"})
    assert digest({}) != digest({"000": ""})
    assert digest({"000": "x", "001": "y"}) == digest({"001": "y", "000": "x"})
