"""When a run must stop: a margin before the timeout of the Lambda function it runs in.

Lambda ends a function at its timeout without warning: what the run held (its run lock, its
multipart upload) stays behind, and nothing records or alerts why. So each function takes a
``Deadline`` from its context when it starts (``context.get_remaining_time_in_millis``, the time left
before Lambda ends it) and hands it to its service, which checks it where work can stop safely:
between chunks of a stream (backup, download), between backups (sweep), between databases (guard),
before a restore writes (drill, restore workflow). Past the deadline a check raises
DeadlineExceededError, one sentence saying how long the run had and what to do; the margin is for
the clean stop itself: abort the upload, release the lock, record the failure, alert.

The margin is 30 s, or a fifth of the function's timeout when that is less (timeouts under 150 s):
a 15-minute function stops after 870 s, a 1-minute one after 48 s. Work that cannot be interrupted
between two checks (one chunk, one part in flight, an engine's snapshot or check) must fit in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from backstop.errors import DeadlineExceededError
from backstop.ports import NoProgress, Progress

MARGIN_SECONDS = 30.0
MARGIN_SHARE = 0.2
"""The margin of a short timeout, as a share of it."""


def margin_for(timeout: float) -> float:
    """Seconds that a function whose timeout is ``timeout`` seconds keeps for stopping cleanly."""
    return min(MARGIN_SECONDS, MARGIN_SHARE * timeout)


class Deadline:
    """The moment a run must stop, from the time its function has left; without a clock, never (the command line).

    ``remaining_ms`` is a clock: each call gives the milliseconds left before the function's timeout
    (the Lambda context's ``get_remaining_time_in_millis``, passed as a plain callable). Its first
    call, as the run starts, gives the function's timeout. ``remedy`` says what to do about a run that
    needs longer; the function knows it, not the service that stops.
    """

    def __init__(self, remaining_ms: Callable[[], int] | None = None, *, remedy: str = "") -> None:
        self._remaining_ms = remaining_ms
        self.remedy = remedy
        self.timeout: int | None = None if remaining_ms is None else math.ceil(remaining_ms() / 1000)
        """The function's timeout in seconds, as the start of the run measured it."""
        self.margin = 0.0 if self.timeout is None else margin_for(self.timeout)

    def remaining(self) -> float | None:
        """Seconds before the function's own timeout, when Lambda ends it; None without a limit."""
        return None if self._remaining_ms is None else self._remaining_ms() / 1000

    def has_passed(self) -> bool:
        remaining = self.remaining()
        return remaining is not None and remaining <= self.margin

    def check(self, what: str) -> None:
        """Raise DeadlineExceededError, saying that ``what`` timed out, once the deadline has passed."""
        remaining = self.remaining()
        if remaining is None or self.timeout is None or remaining > self.margin:
            return
        elapsed = max(0, round(self.timeout - remaining))
        raise DeadlineExceededError(
            f"{what} timed out after {elapsed} s (the function's timeout is {self.timeout} s): {self.remedy}."
        )

    def checkpoint(self, what: str) -> Callable[[], None]:
        """``check(what)`` as a callable without arguments, for a loop to call between two pieces of work."""
        return lambda: self.check(what)

    def progress(self, what: str, inner: Progress | None = None) -> Progress:
        """A Progress that checks the deadline at every chunk it is told of, then tells ``inner``.

        The download of an artifact reports each chunk to its Progress: past the deadline, the check
        raises there, between two chunks, and the download stops before anything was written.
        """
        return _CheckingProgress(self.checkpoint(what), inner or NoProgress())


NO_DEADLINE = Deadline()
"""A run with no time limit: the command line, a test."""


class _CheckingProgress:
    def __init__(self, check: Callable[[], None], inner: Progress) -> None:
        self._check = check
        self._inner = inner

    def start(self, description: str, total: int | None) -> None:
        self._check()
        self._inner.start(description, total)

    def advance(self, amount: int) -> None:
        self._check()
        self._inner.advance(amount)

    def finish(self) -> None:
        self._inner.finish()
