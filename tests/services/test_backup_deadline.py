"""A backup in a function: its run lock follows the function's timeout, so a killed run blocks nothing for long."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.deadline import Deadline
from backstop.errors import BackupAlreadyRunningError
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from tests.services import at, open_uploads

REQUEST = BackupRequest("orders", at(21), "scheduled", Trigger(kind="schedule", by="test"))


class Killed(BaseException):
    """Lambda ending the function at its timeout: nothing of the run's own handles it."""


def in_a_minute_function(config: Config, store: S3Store, now: datetime) -> BackupService:
    """The backup service as a function with a 60 s timeout runs it, its clock saying ``now``."""
    return BackupService(config, store, clock=lambda: now, deadline=Deadline(lambda: 60_000, remedy="give it time"))


def test_a_lock_left_by_a_killed_function_expires_just_after_its_timeout(
    make_config: Any, store: S3Store, s3: Any, orders_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a run in a 60 s function that Lambda ends as its upload starts: its lock is never released
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    started = at(21) + timedelta(seconds=5)

    def killed(*_args: Any, **_kwargs: Any) -> Any:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(S3Store, "upload", killed)
        patched.setattr(S3Store, "release_run_lock", lambda _self, _lock: None)  # no finally runs in a killed run
        with pytest.raises(Killed):
            in_a_minute_function(config, store, started).run(REQUEST)

    # when a run starts while the killed one could still have been running, then it is skipped
    with pytest.raises(BackupAlreadyRunningError):
        in_a_minute_function(config, store, started + timedelta(seconds=59)).run(REQUEST)

    # when Lambda retries it a minute and a quarter later, then the dead run's lock has expired and the retry runs
    outcome = in_a_minute_function(config, store, started + timedelta(seconds=60 + 16)).run(REQUEST)
    assert outcome.created
    assert open_uploads(s3) == []


def test_a_run_without_a_time_limit_keeps_its_lock_for_twelve_hours(
    make_config: Any, store: S3Store, orders_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a run of the command line (no deadline) that dies holding its lock
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    started = at(21) + timedelta(seconds=5)

    def killed(*_args: Any, **_kwargs: Any) -> Any:
        raise Killed

    with monkeypatch.context() as patched:
        patched.setattr(S3Store, "upload", killed)
        patched.setattr(S3Store, "release_run_lock", lambda _self, _lock: None)
        with pytest.raises(Killed):
            BackupService(config, store, clock=lambda: started).run(REQUEST)

    # when another run starts an hour later, then it is skipped: a run without a limit may still be going
    with pytest.raises(BackupAlreadyRunningError):
        BackupService(config, store, clock=lambda: started + timedelta(hours=1)).run(REQUEST)
    assert BackupService(config, store, clock=lambda: started + timedelta(hours=12, seconds=1)).run(REQUEST).created
