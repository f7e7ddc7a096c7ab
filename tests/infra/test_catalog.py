"""The database catalog in the template: parameters that hold every database, read only by the functions that
serve them all, with the digest that binds them to the deploy in those functions' environments."""

from __future__ import annotations

from pathlib import Path

import pytest

from backstop.config import load_config
from backstop.config.catalog import digest
from infra.limits import DeploymentLimitError
from tests.infra import SERVERS_CONFIG, Synthesized, flatten, listed, synthesize_text

pytestmark = pytest.mark.xdist_group("infra")

CATALOG_ARN = "arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/backstop/Backstop/databases"
READERS = ("RestoreRole", "VerificationSweepRole", "VerificationGuardRole")


def test_the_catalog_holds_every_database_in_free_standard_parameters(servers: Synthesized, tmp_path: Path) -> None:
    parameters = servers.of_type("AWS::SSM::Parameter").values()
    config = tmp_path / "servers.yaml"
    config.write_text(SERVERS_CONFIG, encoding="utf-8")

    assert set(servers.catalog_databases()) == {db.name for db in load_config(config).databases}
    assert {p["Properties"]["Type"] for p in parameters} == {"String"}  # no secret: plain, and no key to grant
    assert {p["Properties"]["Tier"] for p in parameters} == {"Standard"}
    assert all(p["Properties"]["Name"].startswith("/backstop/Backstop/databases/") for p in parameters)


@pytest.mark.parametrize("synthesized", ["example", "servers"], indirect=True)
def test_only_restore_sweep_and_guard_read_the_catalog_and_only_its_path(synthesized: Synthesized) -> None:
    readers: dict[str, list[dict[str, object]]] = {}
    for role_id in synthesized.of_type("AWS::IAM::Role"):
        statements = [
            s
            for s in synthesized.statements_of_role(role_id)
            if any(str(a).startswith("ssm:") for a in listed(s["Action"]))
        ]
        if statements:
            readers[role_id] = statements

    # GetParametersByPath is authorized against the path itself: nothing outside the catalog is readable
    expected = {"Sid": "ReadTheDatabaseCatalog", "Effect": "Allow", "Action": "ssm:GetParametersByPath"}
    assert sorted(role_id[: role_id.index("Role") + 4] for role_id in readers) == sorted(READERS)
    for statements in readers.values():
        assert statements == [{**expected, "Resource": CATALOG_ARN}]


def test_the_functions_carry_the_digest_of_the_catalog_in_the_same_template(servers: Synthesized) -> None:
    expected = digest(servers.catalog())
    for prefix in ("RestoreFunction", "VerificationSweep", "VerificationGuard"):
        variables = flatten(servers.environment(prefix))
        assert variables["BACKSTOP_CATALOG"] == "/backstop/Backstop/databases"
        assert variables["BACKSTOP_CATALOG_DIGEST"] == expected


def test_a_database_too_large_for_one_parameter_is_refused_naming_it(tmp_path: Path) -> None:
    queries = "".join(f"\n      - SELECT count(*) FROM table_number_{i:04d}_with_a_long_name" for i in range(160))
    text = (
        "bucket: backstop-big\ndatabases:\n  - name: big\n    engine: sqlite\n    path: /mnt/data/big.db\n"
        f"    validation_queries:{queries}\n"
    )

    with pytest.raises(DeploymentLimitError, match=r"configuration of database big takes \d+ bytes.*limit of 8192"):
        synthesize_text(text, tmp_path)
