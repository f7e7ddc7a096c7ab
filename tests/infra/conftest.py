"""The synthesized apps every infra test module reads, as fixtures.

Each fixture hands out the one synthesis its process caches (``synthesized_example``,
``synthesized_servers``): asking for it in many modules synthesizes once.
"""

from __future__ import annotations

import pytest

from tests.infra import Synthesized, synthesized_example, synthesized_servers


@pytest.fixture(scope="session")
def example(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app of the example backstop.yaml, as ``cdk synth`` builds it."""
    return synthesized_example(tmp_path_factory.getbasetemp() / "cdk.out")


@pytest.fixture(scope="session")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The app of ``SERVERS_CONFIG``: server databases, secrets, Object Lock, approvers, arm64."""
    return synthesized_servers(tmp_path_factory.getbasetemp() / "servers")


@pytest.fixture
def synthesized(request: pytest.FixtureRequest) -> Synthesized:
    """The app a test is parametrized with by fixture name, for a test that holds for both:
    ``@pytest.mark.parametrize("synthesized", ["example", "servers"], indirect=True)``."""
    app: Synthesized = request.getfixturevalue(request.param)
    return app
