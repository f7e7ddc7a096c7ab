"""X-Ray tracing of the handlers: each one is traced in Lambda, none sends anything from the tests or the
embedded emulator (which run the handlers in this process), and what the restore and approval functions
receive or return (task tokens, identity proofs, approval grants) never reaches a trace."""

from __future__ import annotations

import ast
import importlib
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools import Tracer

from backstop.observability import Service

HANDLERS = Path(__file__).resolve().parents[2] / "functions" / "backstop" / "handlers"
MODULES = sorted(path.stem for path in HANDLERS.glob("[!_]*.py"))
SECRET = "SECRET-0f3c9a"
"""A marker put in events and answers, which no trace may contain."""
UNCAPTURED = {"restore", "approval"}
"""The handlers whose events and answers hold task tokens, identity proofs or approval grants."""


def tracer_decorator(module: str) -> ast.expr:
    """The ``tracer.capture_lambda_handler`` decorator of the module's ``handler``."""
    tree = ast.parse((HANDLERS / f"{module}.py").read_text(encoding="utf-8"))
    (handler,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "handler"]
    (found,) = [
        decorator for decorator in handler.decorator_list if "tracer.capture_lambda_handler" in ast.unparse(decorator)
    ]
    return found


@pytest.mark.parametrize("module", MODULES)
def test_every_handler_is_traced_under_its_service(module: str) -> None:
    handler: Any = importlib.import_module(f"backstop.handlers.{module}")
    decorator = tracer_decorator(module)

    assert isinstance(handler.tracer, Tracer)
    assert handler.tracer.service in {service.log_name for service in Service}
    captures_response = not (
        isinstance(decorator, ast.Call)
        and any(k.arg == "capture_response" and ast.unparse(k.value) == "False" for k in decorator.keywords)
    )
    assert captures_response == (module not in UNCAPTURED)


@pytest.mark.parametrize("module", MODULES)
def test_tracing_is_off_in_the_tests_and_the_emulator(module: str) -> None:
    # both run the handlers in a process that is not Lambda's (no LAMBDA_TASK_ROOT): powertools turns the
    # X-Ray SDK off there, so nothing is sent and no daemon is needed
    handler: Any = importlib.import_module(f"backstop.handlers.{module}")

    assert "LAMBDA_TASK_ROOT" not in os.environ
    assert handler.tracer.disabled


INVOKE = """
import json, sys
from types import SimpleNamespace
from backstop.handlers import {module} as handler

secret = {secret!r}

class Context:
    function_name = "f"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
    memory_limit_in_mb = 128
    aws_request_id = "r"
    function_version = "$LATEST"
    def get_remaining_time_in_millis(self):
        return 60000

class Guard:
    def admit(self, step, event, *, function):
        return SimpleNamespace(execution="arn:aws:states:us-east-1:123456789012:execution:m:e", input={{}})

class Workflow:
    def within(self, deadline):
        return self
    def plan(self, state):
        return {{**state, "grant": secret}}

class Approvals:
    def identify_requester(self, admitted):
        return {{"verified": True, "arn": "arn:aws:iam::123456789012:user/alice", "proof": secret}}

# the handler's parts, built by the composition root in Lambda: here stand-ins that echo the secret back
steps = "restore_steps" if "{module}" == "restore" else "approval_steps"
setattr(handler, steps, lambda: (Guard(), Workflow() if "{module}" == "restore" else Approvals()))
event = {event}
print(json.dumps(handler.handler(event, Context())))
"""
EVENTS = {
    "restore": {"step": "plan", "execution": "e", "state": {"database": "orders", "grant": SECRET}, "token": SECRET},
    "approval": {"step": "identify_requester", "execution": "e", "identity": SECRET},
}


def received(daemon: socket.socket) -> str:
    """Every datagram sent to ``daemon`` (the first within 2 s, the others already queued)."""
    daemon.settimeout(2)
    datagrams = [daemon.recv(65536)]
    daemon.settimeout(0.2)
    try:
        while True:
            datagrams.append(daemon.recv(65536))
    except TimeoutError:
        return b"\n".join(datagrams).decode()


@pytest.mark.parametrize("module", sorted(UNCAPTURED))
def test_a_traced_invocation_in_lambda_sends_neither_the_event_nor_the_answer_to_x_ray(module: str) -> None:
    # given an X-Ray daemon (a UDP socket) and a process that looks like Lambda with a sampled trace
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        environment = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(sys.path),
            "LAMBDA_TASK_ROOT": "/var/task",
            "AWS_LAMBDA_FUNCTION_NAME": "f",
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
            "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        }
        script = textwrap.dedent(INVOKE).format(module=module, secret=SECRET, event=repr(EVENTS[module]))

        # when the handler is invoked with a secret in its event and returns one
        run = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)

        # then it answered, its trace reached the daemon, and neither secret is in it
        assert run.returncode == 0, run.stderr
        assert SECRET in json.loads(run.stdout.splitlines()[-1]).values()
        sent = received(daemon)
    assert '"name": "## handler"' in sent
    assert f'"Service": "{Service(module).log_name}"' in sent
    assert SECRET not in sent
