"""Lambda functions run in-process: moto's Docker-less Lambda backend calls the real handlers.

moto without Docker only echoes a Lambda payload. ``in_process_lambdas`` patches its simple
backend so that an invocation (from boto3, from the ``aws`` CLI or from a Step Functions Task
that moto executes) imports the handler named by the function's image command (or ``Handler``)
and calls it with a Lambda-like context, with the function's environment variables applied for the
duration of the call. Invocations are serialised: the environment is process-wide.

An exception becomes what Lambda returns for an unhandled error (``FunctionError: Unhandled`` and
``{"errorType": <class name>, "errorMessage": ...}``), so the state machine's ``Catch`` and
``Retry`` on exception class names behave as in AWS.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from moto.awslambda_simple.models import LambdaSimpleBackend

log = logging.getLogger(__name__)
_LOCK = threading.RLock()


@dataclass
class Invocation:
    """One in-process call: which function, with what, and how it ended."""

    function: str
    handler: str
    event: Any
    error: str | None = None


@dataclass
class InvocationLog:
    calls: list[Invocation] = field(default_factory=list)

    def of(self, handler_suffix: str) -> list[Invocation]:
        return [c for c in self.calls if c.handler.endswith(handler_suffix)]


@dataclass
class _Context:
    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def handler_path(fn: Any) -> str:
    """``module.function`` of a moto function: its image command, else its Handler."""
    command = list(getattr(fn.image_config, "cmd", []) or [])
    if command:
        return str(command[0])
    if fn.handler:
        return str(fn.handler)
    raise RuntimeError(f"Function {fn.function_name} names no handler (no image command, no Handler).")


def _load(path: str) -> Any:
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


@contextmanager
def _environment(variables: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update({k: str(v) for k, v in variables.items()})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class _RoutedStdout(io.TextIOBase):
    """``sys.stdout`` while functions run: a function's prints and logs go to its own log file.

    What a function writes to stdout (powertools' JSON logs and metrics) is what Lambda ships to
    CloudWatch Logs; here it goes to ``<log_dir>/<function>.log``. The target is per thread, since
    Step Functions invokes functions from moto's threads while the caller keeps printing.
    """

    def __init__(self, real: TextIO) -> None:
        self._real = real
        self._local = threading.local()

    @contextmanager
    def to(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as log_file:
            self._local.target = log_file
            try:
                yield
            finally:
                self._local.target = None

    def write(self, text: str) -> int:
        target = getattr(self._local, "target", None) or self._real
        return target.write(text)

    def flush(self) -> None:
        (getattr(self._local, "target", None) or self._real).flush()


@contextmanager
def in_process_lambdas(extra_env: dict[str, str] | None = None, log_dir: Path | None = None) -> Iterator[InvocationLog]:
    """Patch moto's simple Lambda backend to run the real handlers; yields the log of invocations.

    ``extra_env`` is applied under every function's own variables (for example the endpoint of
    the emulator, which a deployed function would not need). With ``log_dir``, each function's
    output goes to ``<log_dir>/<function name>.log`` instead of this process's stdout.
    """
    calls = InvocationLog()
    original = LambdaSimpleBackend.invoke
    router = _RoutedStdout(sys.stdout) if log_dir is not None else None

    def invoke(
        self: LambdaSimpleBackend,
        function_name: str,
        qualifier: str | None,
        body: Any,
        headers: Any,
        response_headers: Any,
    ) -> bytes:
        fn = self.get_function(function_name, qualifier)
        path = handler_path(fn)
        event = json.loads(body) if body else {}
        call = Invocation(function=fn.function_name, handler=path, event=event)
        context = _Context(
            function_name=fn.function_name,
            invoked_function_arn=fn.function_arn,
            memory_limit_in_mb=int(fn.memory_size or 128),
            timeout_s=int(fn.timeout or 3),
        )
        output = router.to(log_dir / f"{fn.function_name}.log") if router and log_dir else nullcontext()
        with _LOCK, _environment({**(extra_env or {}), **(fn.environment_vars or {})}), output:
            calls.calls.append(call)
            try:
                result = _load(path)(event, context)
            except Exception as exc:  # noqa: BLE001 - any error is what Lambda reports as unhandled
                call.error = type(exc).__name__
                log.info("%s raised %s: %s", path, type(exc).__name__, exc)
                response_headers["x-amz-function-error"] = "Unhandled"
                return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}).encode()
        return json.dumps(result).encode()

    LambdaSimpleBackend.invoke = invoke  # type: ignore[method-assign]
    saved_stdout = sys.stdout
    if router is not None:
        sys.stdout = router
    try:
        yield calls
    finally:
        sys.stdout = saved_stdout
        LambdaSimpleBackend.invoke = original  # type: ignore[method-assign]
