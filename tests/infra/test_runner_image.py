"""The runner image, checked without Docker: its build context, its pinned requirements, its handler commands."""

from __future__ import annotations

import importlib
import json
import re
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any, get_args

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from backstop.config import Runner
from infra.runner import LOG_RETENTION, TRACE_ACTIONS
from tests.infra import ROOT, Synthesized

pytestmark = pytest.mark.xdist_group("infra")

FUNCTIONS = ROOT / "functions"
IMAGE_PYTHON = "3.13"
"""The Python of the base image in functions/Dockerfile (Debian 13's python3)."""
IMAGE_EXTRAS = ("lambda",)
"""pyproject.toml's extras the image installs too (awslambdaric, its entry point)."""


def functions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {k: r["Properties"] for k, r in synthesized.of_type("AWS::Lambda::Function").items()}


def pins(text: str) -> dict[str, str]:
    """``name==version`` lines by canonical name (comments and blank lines skipped)."""
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", line
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def runtime_closure() -> set[str]:
    """Every package the runtime dependencies of pyproject.toml pull in on the image's Python (Linux)."""
    environment: dict[str, str] = {
        **default_environment(),
        "python_version": IMAGE_PYTHON,
        "python_full_version": f"{IMAGE_PYTHON}.0",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "os_name": "posix",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [line for extra in IMAGE_EXTRAS for line in project["optional-dependencies"][extra]]
    pending = [Requirement(line) for line in [*project["dependencies"], *extras]]
    seen: set[tuple[str, str]] = set()
    names: set[str] = set()
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        for extra in ("", *requirement.extras):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            names.add(name)
            for line in metadata.requires(requirement.name) or []:
                dependency = Requirement(line)
                if dependency.marker is None or dependency.marker.evaluate({**environment, "extra": extra}):
                    pending.append(dependency)
    return names


# -- handler commands -------------------------------------------------------------------------------


def test_every_function_runs_the_same_image(example: Synthesized) -> None:
    images = {json.dumps(props["Code"]["ImageUri"]) for props in functions(example).values()}

    assert len(images) == 1
    assert all(props["PackageType"] == "Image" for props in functions(example).values())


def test_each_function_names_its_own_handler_command(example: Synthesized) -> None:
    commands = sorted(tuple(props["ImageConfig"]["Command"]) for props in functions(example).values())

    assert commands == [
        ("backstop.handlers.approval.handler",),
        ("backstop.handlers.backup.handler",),
        ("backstop.handlers.backup.handler",),
        ("backstop.handlers.drill.handler",),
        ("backstop.handlers.drill.handler",),
        ("backstop.handlers.failure_alert.handler",),
        ("backstop.handlers.freshness.handler",),
        ("backstop.handlers.restore.handler",),
        ("backstop.handlers.retention_guard.handler",),
        ("backstop.handlers.sweep.handler",),
    ]


def test_every_handler_command_in_the_template_exists_and_imports(example: Synthesized, servers: Synthesized) -> None:
    commands = {
        command
        for synthesized in (example, servers)
        for props in functions(synthesized).values()
        for command in props["ImageConfig"]["Command"]
    }

    for command in sorted(commands):
        module_name, _, attribute = command.rpartition(".")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), command
        assert Path(module.__file__ or "").is_relative_to(FUNCTIONS / "backstop"), command  # shipped in the image


def test_functions_run_on_the_configured_architecture(example: Synthesized, servers: Synthesized) -> None:
    assert {tuple(props["Architectures"]) for props in functions(example).values()} == {("x86_64",)}
    assert {tuple(props["Architectures"]) for props in functions(servers).values()} == {("arm64",)}


@pytest.mark.parametrize(
    ("synthesized", "platform"), [("example", "linux/amd64"), ("servers", "linux/arm64")], indirect=["synthesized"]
)
def test_the_image_is_built_for_the_functions_architecture(synthesized: Synthesized, platform: str) -> None:
    outdir = Path(synthesized.app.outdir)
    (image,) = json.loads((outdir / "Backstop.assets.json").read_text(encoding="utf-8"))["dockerImages"].values()

    assert image["source"]["platform"] == platform


def test_functions_log_to_their_own_group_with_the_configured_retention(servers: Synthesized) -> None:
    groups = synthesized_log_groups(servers)

    assert len(groups) == len(functions(servers)) + 1  # and the restore state machine's
    assert {group["Properties"]["RetentionInDays"] for group in groups.values()} == {30}
    for props in functions(servers).values():
        assert props["LoggingConfig"]["LogGroup"]["Ref"] in groups


def synthesized_log_groups(synthesized: Synthesized) -> dict[str, Any]:
    return synthesized.of_type("AWS::Logs::LogGroup")


@pytest.mark.parametrize("synthesized", ["example", "servers"], indirect=True)
def test_every_function_is_traced_by_x_ray(synthesized: Synthesized) -> None:
    found = functions(synthesized)

    assert len(found) >= 8
    assert {logical_id: props.get("TracingConfig") for logical_id, props in found.items()} == {
        logical_id: {"Mode": "Active"} for logical_id in found
    }


@pytest.mark.parametrize("synthesized", ["example", "servers"], indirect=True)
def test_every_function_role_may_send_traces_before_its_function_is_created(synthesized: Synthesized) -> None:
    tracing_id, tracing = synthesized.one("AWS::IAM::ManagedPolicy", "RunnerTracing")
    (statement,) = tracing["Properties"]["PolicyDocument"]["Statement"]
    roles = {props["Role"]["Fn::GetAtt"][0] for props in functions(synthesized).values()}

    # only what sending traces takes, which names no resource
    assert (statement["Effect"], statement["Action"], statement["Resource"]) == ("Allow", list(TRACE_ACTIONS), "*")
    assert {role["Ref"] for role in tracing["Properties"]["Roles"]} == roles
    # Lambda refuses to create a function with active tracing whose role may not send traces
    for logical_id in functions(synthesized):
        assert tracing_id in synthesized.resources[logical_id]["DependsOn"], logical_id


# -- the build context ----------------------------------------------------------------------------------


def test_synthesis_stages_only_what_the_dockerfile_copies(example: Synthesized) -> None:
    outdir = Path(example.app.outdir)
    (image,) = json.loads((outdir / "Backstop.assets.json").read_text(encoding="utf-8"))["dockerImages"].values()
    staged = outdir / image["source"]["directory"]
    top = {path.name for path in staged.iterdir()}

    assert top == {"Dockerfile", "requirements.txt", "backstop", "certs", ".dockerignore"}
    assert [path.name for path in (staged / "certs").iterdir()] == ["rds-global-bundle.pem"]  # not its README
    assert not [path for path in staged.rglob("*") if path.name == "__pycache__" or path.suffix == ".pyc"]
    shipped = {p.relative_to(staged / "backstop") for p in (staged / "backstop").rglob("*.py")}
    source = {p.relative_to(FUNCTIONS / "backstop") for p in (FUNCTIONS / "backstop").rglob("*.py")}
    assert shipped == source


def dockerfile() -> str:
    return (FUNCTIONS / "Dockerfile").read_text(encoding="utf-8")


def test_dockerfile_builds_on_debian_trixie_slim_with_the_lambda_runtime_interface_client() -> None:
    text = dockerfile()

    assert [line for line in text.splitlines() if line.startswith("FROM ")] == [
        "FROM debian:trixie-slim AS packages",
        "FROM debian:trixie-slim",
    ]
    assert 'ENTRYPOINT ["/usr/bin/python3", "-m", "awslambdaric"]' in text
    assert 'CMD ["backstop.handlers.backup.handler"]' in text
    assert "WORKDIR /var/task\n" in text


def test_dockerfile_installs_the_pinned_packages_and_the_client_tools_of_pg_major() -> None:
    text = dockerfile()

    assert "\nARG PG_MAJOR=17\n" in text
    assert '"postgresql-client-${PG_MAJOR}" mariadb-client' in text
    assert "ENV PATH=/usr/lib/postgresql/${PG_MAJOR}/bin:" in text
    assert "find /usr/share/postgresql-common/pgdg -name '*.sh')\" -y" in text  # PGDG=yes: any major
    assert "--no-deps --only-binary=:all: --target /var/task -r /tmp/requirements.txt" in text
    assert "COPY backstop/ /var/task/backstop/" in text


def test_the_image_build_runs_every_client_tool_and_imports_every_handler() -> None:
    text = dockerfile()
    handlers = {f"backstop.handlers.{p.stem}" for p in (FUNCTIONS / "backstop" / "handlers").glob("[!_]*.py")}

    for tool in ("pg_dump", "pg_restore", "psql", "mariadb-dump", "mariadb"):
        assert f"{tool} --version" in text, tool
    imported = set(re.findall(r"backstop\.handlers\.\w+", text.split("\nENTRYPOINT", 1)[0]))
    assert imported == handlers


def test_image_requirements_are_the_projects_pins() -> None:
    image = pins((FUNCTIONS / "requirements.txt").read_text(encoding="utf-8"))
    lock = pins((ROOT / "requirements.lock").read_text(encoding="utf-8"))

    assert {name: version for name, version in image.items() if lock.get(name) != version} == {}


def test_image_requirements_are_the_complete_runtime_closure() -> None:
    image = pins((FUNCTIONS / "requirements.txt").read_text(encoding="utf-8"))

    # Installed with --no-deps: a missing package would fail at import time in AWS, an extra one is dead weight.
    assert set(image) == runtime_closure()


def test_every_log_retention_the_configuration_accepts_is_one_cloudwatch_offers() -> None:
    accepted = set(get_args(Runner.model_fields["log_retention_days"].annotation))

    assert accepted == set(LOG_RETENTION)
    assert all(LOG_RETENTION[days].name != "INFINITE" for days in accepted)
