"""Payload models: what EventBridge Scheduler sends to the backup function. ``events/`` holds samples."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

from backstop.config import Database


class ScheduledBackupEvent(BaseModel):
    """The input of one database's schedule: its configuration (no secrets) and the scheduled time.

    The schedule fills ``scheduled_time`` with ``<aws.scheduler.scheduled-time>``, so a retried
    or duplicated delivery names the same time and therefore the same backup id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: Database
    scheduled_time: datetime
