"""Handlers for the in-process Lambda runner's own tests."""

from __future__ import annotations

import os
from typing import Any


class TargetLockedError(Exception):
    """Named like the workflow's errors, so a Catch on the class name can be tested."""


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {
        "event": event,
        "env": os.environ.get("SAMPLE_VAR"),
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }


def locked(event: dict[str, Any], context: Any) -> None:
    raise TargetLockedError("held by exec-1")
