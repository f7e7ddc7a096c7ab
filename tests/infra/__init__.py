"""Infrastructure tests: the synthesized template, its lifecycle rules, cdk-nag and cfn-lint.

``synthesized_example`` builds the app exactly as ``cdk synth`` does (``app.build`` with the context
of cdk.json) once per test process; every template test reads that one result. The infra modules
share the xdist group "infra", so under ``make unit`` that is one synthesis in total.
"""

from __future__ import annotations

import os

# jsii starts its Node process at the first `import aws_cdk` and reads this then, so it comes first.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from aws_cdk import App
from aws_cdk.assertions import Template

from app import build
from infra.stack import BackstopStack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "backstop.yaml"
CDK_CONTEXT: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text(encoding="utf-8"))["context"]


@dataclass(frozen=True)
class Synthesized:
    """The example app after synthesis: its stack, the template for assertions, and the raw JSON."""

    app: App
    stack: BackstopStack
    template: Template

    @property
    def resources(self) -> dict[str, Any]:
        resources: dict[str, Any] = self.template.to_json()["Resources"]
        return resources


def synthesize(config: Path, outdir: Path) -> Synthesized:
    """Build and synthesize the app for ``config`` with the cdk.json context, writing into ``outdir``."""
    app = App(context={**CDK_CONTEXT, "config": str(config)}, outdir=str(outdir))
    stack = build(app)
    return Synthesized(app=app, stack=stack, template=Template.from_stack(stack))


@cache
def synthesized_example(outdir: Path) -> Synthesized:
    """The example configuration's app, synthesized once per process whichever module asks first."""
    return synthesize(EXAMPLE_CONFIG, outdir)
