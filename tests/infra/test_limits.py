"""Limits AWS enforces at deploy time, refused at synth in one sentence: a stack's resources, a function's
environment. Synthesized as `cdk synth` would, with many server databases."""

from __future__ import annotations

from pathlib import Path

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_lambda as lambda_

from infra.limits import LAMBDA_ENVIRONMENT_BYTES, TOKEN_BYTES, DeploymentLimitError, environment_bytes
from tests.infra import Synthesized, many_databases, synthesize_text

pytestmark = pytest.mark.xdist_group("infra")


def test_a_hundred_databases_are_refused_before_deploy_naming_the_resource_limit(tmp_path: Path) -> None:
    with pytest.raises(DeploymentLimitError, match=r"CloudFormation resources in one stack, over the limit of 500"):
        synthesize_text(many_databases(100, targets=False), tmp_path)


def sizes(synthesized: Synthesized) -> dict[str, int]:
    """The environment size of every function that serves all databases (restore, sweep, guard)."""
    stack = synthesized.stack
    return {
        path: environment_bytes(stack, function)
        for path in ("Restore/Function", "Verification/Sweep", "Verification/Guard")
        if isinstance(
            function := stack.node.find_child(path.split("/")[0]).node.find_child(path.split("/")[1]),
            lambda_.CfnFunction,
        )
    }


def test_no_functions_environment_grows_with_the_databases(tmp_path: Path) -> None:
    # given one and thirty server databases, each with a restore target (thirty used to pass Lambda's 4 KB by 3x)
    one = synthesize_text(many_databases(1, targets=True), tmp_path / "one")
    thirty = synthesize_text(many_databases(30, targets=True), tmp_path / "thirty")

    # then the functions that serve them all have environments of the same size, well under the limit,
    # and the databases are the catalog's thirty parameters
    assert sizes(one) == sizes(thirty)
    assert set(sizes(thirty)) == {"Restore/Function", "Verification/Sweep", "Verification/Guard"}
    assert max(sizes(thirty).values()) < LAMBDA_ENVIRONMENT_BYTES // 2
    assert len(thirty.catalog_databases()) == 30


def test_a_configuration_within_the_limits_synthesizes(tmp_path: Path) -> None:
    synthesize_text(many_databases(5, targets=True), tmp_path)


def test_forty_databases_synthesize_with_the_overflow_policies_acknowledged_too(tmp_path: Path) -> None:
    # IAM splits the guard's and the sweep's grants over overflow policies; cdk-nag must see them acknowledged
    synthesized = synthesize_text(many_databases(40, targets=False), tmp_path)

    assert any("OverflowPolicy" in logical_id for logical_id in synthesized.of_type("AWS::IAM::ManagedPolicy"))
    assert len(synthesized.resources) <= 500


def test_an_environment_counts_names_text_and_each_deploy_time_value_pessimistically() -> None:
    stack = Stack(App(), "Sizes")
    function = lambda_.CfnFunction(
        stack,
        "F",
        code=lambda_.CfnFunction.CodeProperty(image_uri="x"),
        role="arn:aws:iam::123456789012:role/r",
        environment=lambda_.CfnFunction.EnvironmentProperty(
            variables={"A": "xyz", "B": stack.stack_id, "C": f"prefix-{stack.account}"}
        ),
    )

    assert environment_bytes(stack, function) == 1 + 3 + 1 + TOKEN_BYTES + 1 + len("prefix-") + TOKEN_BYTES
    assert LAMBDA_ENVIRONMENT_BYTES == 4096


def test_the_stack_is_named_by_the_configuration_and_its_names_follow(tmp_path: Path) -> None:
    synthesized = synthesize_text("stack_name: BackstopBilling\n" + many_databases(1, targets=True), tmp_path)

    assert synthesized.stack.stack_name == "BackstopBilling"
    (role,) = [r for k, r in synthesized.of_type("AWS::IAM::Role").items() if k.startswith("Backupsdb000Role")]
    assert role["Properties"]["Path"] == "/backstop/BackstopBilling/"
