"""Fault injection for the in-memory fakes: a test arms an error on a method, the next calls raise it.

A fake's port methods are marked ``@faulty``; ``fail_next("acquire", RestoreTableError(...))`` makes the
next call of ``acquire`` raise that error instead of doing its work (nothing changes, as when the
service refused the request), and ``after=True`` makes it raise once the work is done (the write
happened but its answer was lost). Arm the project's own exception the real adapter raises for that
failure (``StorageError`` for S3, ``RestoreTableError`` for DynamoDB, ``ConfigError`` for Parameter
Store): services only ever see those.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound="Faulty")

_FAULTY = "__fake_faulty__"


@dataclass
class _Armed:
    error: BaseException
    times: int | None  # None: every call until healed
    after: bool


def faulty(method: Callable[Concatenate[F, P], R]) -> Callable[Concatenate[F, P], R]:
    """Mark a port method of a fake as one a test can make fail (``Faulty.fail_next``)."""

    @functools.wraps(method)
    def call(self: F, /, *args: P.args, **kwargs: P.kwargs) -> R:
        self._raise_armed(method.__name__, after=False)
        result = method(self, *args, **kwargs)
        self._raise_armed(method.__name__, after=True)
        return result

    setattr(call, _FAULTY, True)
    return call


class Faulty:
    """Base of the fakes: arm, count and clear the faults of their ``@faulty`` methods."""

    _armed_faults: dict[str, list[_Armed]]

    @classmethod
    def faulty_methods(cls) -> frozenset[str]:
        """The names of the methods a fault can be armed on."""
        return frozenset(name for name in dir(cls) if getattr(getattr(cls, name), _FAULTY, False))

    def _faults(self) -> dict[str, list[_Armed]]:
        # Created on first use, so fakes combined by inheritance need no shared constructor for it.
        if "_armed_faults" not in self.__dict__:
            self._armed_faults = {}
        return self._armed_faults

    def fail_next(self, method: str, error: BaseException, *, times: int = 1, after: bool = False) -> None:
        """The next ``times`` calls of ``method`` raise ``error``: before doing anything, or after the work
        is done with ``after`` (a write that happened though its caller was told it failed)."""
        if method not in self.faulty_methods():
            raise ValueError(f"{type(self).__name__} has no method {method!r} to fail: {sorted(self.faulty_methods())}")
        if times < 1:
            raise ValueError("times must be at least 1")
        self._faults().setdefault(method, []).append(_Armed(error, times, after))

    def fail_always(self, method: str, error: BaseException) -> None:
        """Every call of ``method`` raises ``error`` (before doing anything) until ``heal``."""
        self.fail_next(method, error)
        self._faults()[method][-1].times = None

    def fail_everything(self, error: BaseException) -> None:
        """Every call of every faultable method raises ``error`` until ``heal``: the service is unreachable."""
        for method in self.faulty_methods():
            self.fail_always(method, error)

    def heal(self) -> None:
        """Forget every armed fault."""
        self._faults().clear()

    def _raise_armed(self, method: str, *, after: bool) -> None:
        queue = self._faults().get(method, [])
        for armed in queue:
            if armed.after != after:
                continue
            if armed.times is not None:
                armed.times -= 1
                if armed.times == 0:
                    queue.remove(armed)
            raise armed.error
