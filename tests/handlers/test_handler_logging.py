"""A warm Lambda container keeps module state between invocations: no log key of one invocation
may label the next one's lines (a restore's Resolve line named the previous execution)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import pytest

HANDLERS = ["approval", "backup", "drill", "failure_alert", "freshness", "restore", "retention_guard", "sweep"]


@dataclass
class _Context:
    function_name: str = "f"
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:f"
    memory_limit_in_mb: int = 128
    aws_request_id: str = "r"
    function_version: str = "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return 1000


@pytest.mark.parametrize("name", HANDLERS)
def test_an_invocation_starts_without_the_previous_invocations_log_keys(name: str) -> None:
    module: Any = importlib.import_module(f"backstop.handlers.{name}")
    # given a previous invocation in this container that labelled its lines with its execution
    module.logger.append_keys(execution="the-previous-execution")

    # when the next invocation runs (here it fails at once on a payload it cannot use)
    with pytest.raises(Exception):  # noqa: B017 - each handler refuses {"step": None} its own way
        module.handler({"step": None}, _Context())

    # then its lines carry none of the previous invocation's keys
    assert "execution" not in module.logger.get_current_keys()
