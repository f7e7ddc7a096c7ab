"""Metric names on both sides: what the alarms and the dashboard watch is what the handlers emit.

Both sides take the namespace, the metric names and the services from ``backstop.observability``;
these tests fail when one side names a metric the other does not emit, or types a name as a string.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from backstop.observability import NAMESPACE, Metric, Service
from tests.infra import ROOT, Synthesized, flatten

pytestmark = pytest.mark.xdist_group("infra")

HANDLERS = ROOT / "functions" / "backstop" / "handlers"
SOURCES = sorted([*HANDLERS.glob("[!_]*.py"), *(ROOT / "infra").glob("[!_]*.py")])
"""The two sides: the handlers, which emit, and the constructs, which alarm and chart."""


def handler_modules() -> list[ModuleType]:
    return [importlib.import_module(f"backstop.handlers.{path.stem}") for path in sorted(HANDLERS.glob("[!_]*.py"))]


def emitting(service: str) -> ModuleType:
    """The one handler whose powertools Metrics emit under ``service``."""
    (module,) = [m for m in handler_modules() if hasattr(m, "metrics") and m.metrics.service == service]
    return module


def calls(module: ModuleType, method: str) -> list[ast.Call]:
    """Every call of ``<something>.<method>(...)`` in the module's source."""
    tree = ast.parse(Path(module.__file__ or "").read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
    ]


def metric_members(node: ast.expr) -> list[str]:
    """The ``Metric`` members an ``add_metric(name=...)`` argument may be; a string or anything else fails."""
    if isinstance(node, ast.IfExp):
        return metric_members(node.body) + metric_members(node.orelse)
    assert isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "Metric", (
        f"add_metric(name={ast.unparse(node)}): name a member of backstop.observability.Metric"
    )
    return [node.attr]


def emitted(module: ModuleType) -> set[Metric]:
    """The metrics a handler module emits, read from its ``add_metric`` calls."""
    names = [
        member
        for call in calls(module, "add_metric")
        for keyword in call.keywords
        if keyword.arg == "name"
        for member in metric_members(keyword.value)
    ]
    return {Metric[name] for name in names}


def adds_database_dimension(module: ModuleType) -> bool:
    return any(
        keyword.arg == "name" and isinstance(keyword.value, ast.Constant) and keyword.value.value == "database"
        for call in calls(module, "add_dimension")
        for keyword in call.keywords
    )


def dashboard_metrics(synthesized: Synthesized) -> list[tuple[str, str, dict[str, str]]]:
    """(namespace, metric name, dimensions) of every metric the dashboard's graphs draw."""
    (dashboard,) = synthesized.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(flatten(dashboard["Properties"]["DashboardBody"]))
    found = []
    for widget in body["widgets"]:
        for entry in widget["properties"].get("metrics", []):
            fields = [field for field in entry if not isinstance(field, dict)]
            if len(fields) >= 2:
                namespace, name, *dimensions = fields
                found.append((namespace, name, dict(zip(dimensions[::2], dimensions[1::2], strict=True))))
    return found


def test_every_handler_emits_its_metrics_as_members_of_the_enum_in_the_namespace_of_its_service() -> None:
    modules = [m for m in handler_modules() if hasattr(m, "metrics")]

    assert {m.metrics.service for m in modules} == set(Service) - {Service.APPROVAL}  # approval emits no metric
    for module in modules:
        assert module.metrics.namespace == NAMESPACE, module.__name__
        assert emitted(module), module.__name__  # and every name= was a Metric member (metric_members)
    # every name of the enum is emitted by some handler: none is left over for an alarm to wait on
    assert set().union(*(emitted(m) for m in modules)) == set(Metric)


def test_every_backstop_metric_an_alarm_watches_is_emitted_by_the_handler_of_its_service(example: Synthesized) -> None:
    # An alarm on a metric nobody emits, or with other dimensions, can never fire.
    watched = {
        (alarm["MetricName"], frozenset(d["Name"] for d in alarm["Dimensions"]), service)
        for alarm in example.alarms().values()
        if alarm["Namespace"] == NAMESPACE
        for service in [next(d["Value"] for d in alarm["Dimensions"] if d["Name"] == "service")]
    }

    assert {(name, service) for name, _, service in watched} == {
        (Metric.NEWEST_BACKUP_AGE, Service.FRESHNESS),
        (Metric.BACKUP_SIZE_ANOMALY, Service.BACKUP),
        (Metric.DRILL_SUCCEEDED, Service.DRILL),
        (Metric.LAST_SUCCESSFUL_DRILL_AGE, Service.FRESHNESS),
        (Metric.SWEEP_MISMATCHES, Service.SWEEP),
        (Metric.SWEEP_UNREADABLE, Service.SWEEP),
        (Metric.SWEEP_OVERWRITTEN, Service.SWEEP),
        (Metric.SWEEP_BACKUPS_CHECKED, Service.SWEEP),
        (Metric.HELD_BACKUPS, Service.GUARD),
    }
    for name, dimensions, service in watched:
        handler = emitting(service)
        assert Metric(name) in emitted(handler), (name, service)
        if "database" in dimensions:  # the sweep's and the guard's alarms are on the whole vault
            assert adds_database_dimension(handler), (name, service)


def test_every_backstop_metric_on_the_dashboard_is_emitted_by_the_handler_of_its_service(
    example: Synthesized,
) -> None:
    drawn = [(name, dimensions) for namespace, name, dimensions in dashboard_metrics(example) if namespace == NAMESPACE]

    assert len(drawn) >= 10
    for name, dimensions in drawn:
        handler = emitting(dimensions["service"])
        assert Metric(name) in emitted(handler), (name, dimensions)
        assert "database" not in dimensions or adds_database_dimension(handler), (name, dimensions)


def string_constants(path: Path) -> list[tuple[int, str]]:
    """Every string constant of a source file (f-string parts and docstrings included), with its line,
    except a Step Functions Fail state's ``error=`` (the name an execution fails with, not a metric)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exempt = {
        id(keyword.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for keyword in node.keywords
        if keyword.arg == "error"
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in exempt
    ]


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_metric_name_or_the_namespace_is_typed_as_a_string(path: Path) -> None:
    names = re.compile(r"\b(" + "|".join(re.escape(m.value) for m in Metric) + r")\b")
    found: list[Any] = [
        (line, text) for line, text in string_constants(path) if text == NAMESPACE or names.search(text)
    ]

    assert found == []  # use backstop.observability's NAMESPACE and Metric
