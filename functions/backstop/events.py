"""Payload models: what EventBridge Scheduler and Lambda send to the functions. ``events/`` holds samples.

Our own schedule inputs forbid unknown keys (nothing can be smuggled in). The records AWS writes
about a failed invocation ignore them instead: AWS may add fields, and the function that turns
those records into alerts must never fail because it did.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue, field_validator

from backstop.config import Database, DatabaseName, Duration


class ScheduledBackupEvent(BaseModel):
    """The input of one database's schedule: its configuration (no secrets) and the scheduled time.

    The schedule fills ``scheduled_time`` with ``<aws.scheduler.scheduled-time>``, so a retried
    or duplicated delivery names the same time and therefore the same backup id.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: Database
    scheduled_time: datetime


class ScheduledDrillEvent(BaseModel):
    """The input of one database's drill schedule: its configuration with its drill and restore targets
    (so the run refuses to drill into any of them), no secrets, and the scheduled time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database: Database
    scheduled_time: datetime
    backup: str | None = None
    """A backup id to drill instead of the one the drill configuration picks (manual invocations)."""


class WatchedDatabase(BaseModel):
    """One database of the freshness schedule, with the age past which its newest backup is stale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DatabaseName
    stale_after: Duration
    drill_every: Duration | None = None
    """The database's drill cadence, when it drills: its last successful drill is checked too."""


class FreshnessCheckEvent(BaseModel):
    """The input of the freshness schedule: every watched database, and the time of the check.

    The schedule fills ``checked_at`` with ``<aws.scheduler.scheduled-time>``; without it the
    check runs against the current time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    databases: tuple[WatchedDatabase, ...] = Field(min_length=1)
    checked_at: AwareDatetime | None = None

    @field_validator("databases")
    @classmethod
    def _named_once(cls, databases: tuple[WatchedDatabase, ...]) -> tuple[WatchedDatabase, ...]:
        names = [db.name for db in databases]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"each database is listed once; repeated: {', '.join(repeated)}")
        return databases


class _AwsRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class InvocationRequestContext(_AwsRecord):
    request_id: str = Field(default="", alias="requestId")
    function_arn: str = Field(default="", alias="functionArn")
    condition: str = ""
    approximate_invoke_count: int = Field(default=0, alias="approximateInvokeCount")


class InvocationResponseContext(_AwsRecord):
    status_code: int | None = Field(default=None, alias="statusCode")
    executed_version: str | None = Field(default=None, alias="executedVersion")
    function_error: str | None = Field(default=None, alias="functionError")


class AsyncInvocationRecord(_AwsRecord):
    """What Lambda sends to a destination after an asynchronous invocation (here: OnFailure).

    ``condition`` is ``RetriesExhausted`` (every attempt failed: error, timeout, out of memory) or
    ``EventAgeExceeded`` (never run in time, so no response); ``request_payload`` is the
    schedule's input and ``response_payload`` the last attempt's error object.
    """

    version: str = ""
    timestamp: datetime | None = None
    request_context: InvocationRequestContext = Field(alias="requestContext")
    request_payload: JsonValue = Field(default=None, alias="requestPayload")
    response_context: InvocationResponseContext | None = Field(default=None, alias="responseContext")
    response_payload: JsonValue = Field(default=None, alias="responsePayload")
