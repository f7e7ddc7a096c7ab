"""A Lambda Runtime API on loopback: what the Lambda service is to a function's runtime client.

A function's process (``python -m awslambdaric <handler>``, the image's entry point) asks
``GET /2018-06-01/runtime/invocation/next`` for work, runs its handler and answers with
``POST /2018-06-01/runtime/invocation/{id}/response`` or ``.../error`` (or ``/runtime/init/error``
when the handler cannot even be loaded). ``invoke`` queues one event and waits for that answer, as
a synchronous ``lambda:Invoke`` does.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

PREFIX = "/2018-06-01/runtime"


@dataclass(frozen=True)
class Outcome:
    """How one invocation ended: the handler's result, or the error the runtime client reported."""

    request_id: str
    payload: Any
    error_type: str | None = None

    @property
    def failed(self) -> bool:
        return self.error_type is not None


class InitError(RuntimeError):
    """The runtime client reported that the function could not start (its handler did not load)."""


class RuntimeApi:
    """Serves one function's runtime client; ``invoke`` hands it an event and waits for the outcome."""

    def __init__(self, function_arn: str, timeout_s: int) -> None:
        self.function_arn = function_arn
        self.timeout_s = timeout_s
        self._pending: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self._outcomes: dict[str, queue.Queue[Outcome]] = {}
        self._init_error: Any = None
        self.polls = 0
        """How many times the client asked for work: a warm container asks again after each invocation."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def address(self) -> str:
        """``AWS_LAMBDA_RUNTIME_API``: host and port, no scheme."""
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def invoke(self, event: Any, *, alive: Any = None) -> Outcome:
        """Queue ``event`` and wait (at most the function's timeout) for its response or error.

        ``alive`` (a ``subprocess.Popen``) is polled while waiting: a process that exits stops the wait.
        """
        request_id = str(uuid.uuid4())
        answer: queue.Queue[Outcome] = queue.Queue()
        self._outcomes[request_id] = answer
        self._pending.put((request_id, json.dumps(event).encode()))
        deadline = time.monotonic() + self.timeout_s
        while time.monotonic() < deadline:
            if self._init_error is not None:
                raise InitError(f"the function did not start: {self._init_error}")
            if alive is not None and alive.poll() is not None:
                raise RuntimeError(f"the function's process exited ({alive.returncode}) during invocation {request_id}")
            try:
                return answer.get(timeout=0.2)
            except queue.Empty:
                continue
        raise TimeoutError(f"invocation {request_id} got no answer within {self.timeout_s} s")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the runtime client keeps its connection open between calls

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _body(self) -> Any:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return json.loads(raw) if raw else None

            def do_GET(self) -> None:
                if self.path != f"{PREFIX}/invocation/next":
                    self._reply(404)
                    return
                api.polls += 1
                request_id, event = api._pending.get()  # long poll: Lambda answers only when there is work
                deadline_ms = int((time.time() + api.timeout_s) * 1000)
                self._reply(
                    200,
                    event,
                    {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(deadline_ms),
                        "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                        "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Sampled=0",
                    },
                )

            def do_POST(self) -> None:
                parts = self.path.removeprefix(PREFIX).strip("/").split("/")
                body = self._body()
                if parts == ["init", "error"]:
                    api._init_error = body
                    self._reply(202, b"{}")
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in {"response", "error"}:
                    answer = api._outcomes.get(parts[1])
                    if answer is None:
                        self._reply(400, b'{"errorType": "InvalidRequestID"}')
                        return
                    error_type = self.headers.get("Lambda-Runtime-Function-Error-Type") if parts[2] == "error" else None
                    if parts[2] == "error":
                        error_type = (body or {}).get("errorType") or error_type or "Unhandled"
                    answer.put(Outcome(parts[1], body, error_type))
                    self._reply(202, b"{}")
                else:
                    self._reply(404)

        return Handler
