"""The database catalog contract: what a deploy wrote comes back whole and in name order, and nothing else does.

Every test runs against ``FakeCatalog`` and ``ParameterCatalog`` on moto Parameter Store. The restore,
sweep and guard functions read their databases through ``read()`` / ``databases()`` and stop on the
ConfigError of a catalog changed outside a deploy or one that cannot be read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from backstop.config import AnyDatabase
from backstop.config.catalog import catalog_path, document
from backstop.errors import ConfigError
from tests.fakes.catalog import FakeCatalog
from tests.store.test_catalog import deploy, server

PATH = catalog_path("Backstop")


class DatabaseCatalog(Protocol):
    """What the functions read from the catalog (``ParameterCatalog``; no port in ``backstop.ports`` yet)."""

    def read(self) -> list[tuple[AnyDatabase, dict[str, Any]]]: ...
    def databases(self) -> tuple[AnyDatabase, ...]: ...


@dataclass
class Deploys:
    """A deploy writing the catalog (returning the reader of a function deployed with it), and tampering after."""

    deploy: Callable[[list[AnyDatabase]], DatabaseCatalog]
    change_outside_a_deploy: Callable[[DatabaseCatalog], None]
    unreadable: Callable[[], DatabaseCatalog]


def _fake_deploys() -> Deploys:
    def tamper(catalog: DatabaseCatalog) -> None:
        assert isinstance(catalog, FakeCatalog)
        catalog.change_outside_a_deploy()

    def unreadable() -> DatabaseCatalog:
        fake = FakeCatalog()
        fake.fail_everything(ConfigError(f"The database catalog {PATH} cannot be read (AccessDeniedException: no)."))
        return fake

    return Deploys(FakeCatalog, tamper, unreadable)


@pytest.fixture(params=["fake", "real"])
def deploys(request: pytest.FixtureRequest) -> Iterator[Deploys]:
    if request.param == "fake":
        yield _fake_deploys()
        return
    with mock_aws():
        ssm = boto3.client("ssm", region_name="eu-west-1")

        def tamper(_catalog: DatabaseCatalog) -> None:
            name = ssm.get_parameters_by_path(Path=PATH)["Parameters"][0]["Name"]
            value = ssm.get_parameter(Name=name)["Parameter"]["Value"].replace(".example.internal", ".example.com")
            ssm.put_parameter(Name=name, Value=value, Type="String", Overwrite=True)

        def unreadable() -> DatabaseCatalog:
            denied = boto3.client("ssm", region_name="eu-west-1")

            def deny(**_: Any) -> None:
                raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParametersByPath")

            denied.meta.events.register("before-call.ssm.GetParametersByPath", deny)
            return deploy(denied, [])

        yield Deploys(lambda databases: deploy(ssm, databases), tamper, unreadable)


def test_the_deployed_databases_come_back_equal_and_in_name_order(deploys: Deploys) -> None:
    # given three databases deployed out of order
    databases = [server("orders"), server("billing"), server("uploads", retention={"daily": 14})]

    # when a function reads the catalog
    catalog = deploys.deploy(databases)

    # then it gets them all, equal to what was configured, by name
    assert catalog.databases() == (databases[1], databases[0], databases[2])


def test_each_database_comes_with_the_document_it_was_written_from(deploys: Deploys) -> None:
    databases = [server("orders"), server("billing", validation_queries=["SELECT 1"])]

    read = deploys.deploy(databases).read()

    assert [(db.name, doc) for db, doc in read] == [
        ("billing", document(databases[1])),
        ("orders", document(databases[0])),
    ]
    assert [db for db, _ in read] == sorted(databases, key=lambda db: db.name)


def test_a_deploy_without_databases_reads_as_an_empty_catalog(deploys: Deploys) -> None:
    catalog = deploys.deploy([])

    assert catalog.databases() == ()
    assert catalog.read() == []


def test_many_databases_over_several_parameters_come_back_exactly(deploys: Deploys) -> None:
    # given forty server databases with restore targets and retention: several parameters
    databases = [server(f"db{i:03d}", retention={"daily": 7 + i}) for i in range(40)]

    # then every one comes back, in order
    assert deploys.deploy(databases).databases() == tuple(databases)


def test_a_catalog_changed_outside_a_deploy_is_refused(deploys: Deploys) -> None:
    # given a deployed catalog whose staging target someone redirected since
    catalog = deploys.deploy([server("orders"), server("billing")])
    deploys.change_outside_a_deploy(catalog)

    # when a function deployed with the original reads it, then it refuses in one sentence and uses nothing
    with pytest.raises(ConfigError, match=r"is not the one this function was deployed with.*deploy again"):
        catalog.databases()
    with pytest.raises(ConfigError, match=r"is not the one this function was deployed with"):
        catalog.read()


def test_a_catalog_that_cannot_be_read_says_why(deploys: Deploys) -> None:
    with pytest.raises(ConfigError, match=rf"The database catalog {PATH} cannot be read \(AccessDeniedException"):
        deploys.unreadable().databases()
