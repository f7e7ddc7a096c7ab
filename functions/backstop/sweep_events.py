"""The input of the sweep schedule (``events/sweep/`` holds samples)."""

from __future__ import annotations

from pydantic import AwareDatetime

from backstop.events import ScheduleInput


class SweepEvent(ScheduleInput):
    """The input of the verification sweep's schedule: the time of the run, nothing else.

    The databases to sweep and the byte budget are the function's deployment
    (``backstop.config.environment.SweepSettings``): an event that could name them could widen what the sweep
    reads. The schedule fills ``checked_at`` with ``<aws.scheduler.scheduled-time>``; without it the
    sweep records the current time.
    """

    kind = "sweep event"
    carries = "checked_at"

    checked_at: AwareDatetime | None = None


class GuardEvent(ScheduleInput):
    """The input of the keep-last-good guard's schedule: the time of the run, nothing else.

    The databases and their ``keep_last`` are the function's deployment
    (``backstop.config.environment.GuardSettings``); the schedule fills ``checked_at`` with
    ``<aws.scheduler.scheduled-time>``, against which future-dated backups are told apart.
    """

    kind = "keep-last-good guard event"
    carries = "checked_at"

    checked_at: AwareDatetime | None = None
