"""Payload models: what EventBridge Scheduler and Lambda send to the functions. ``events/`` holds samples.

Our own schedule inputs forbid unknown keys (nothing can be smuggled in), and a database's backup
and drill schedules only name it: its configuration (host, path, secret ARN) is in the function's
environment, set by a deployment, because anyone allowed to invoke the function or edit the
schedule could write an event. The records AWS writes about a failed invocation ignore unknown
keys instead: AWS may add fields, and the function that turns those records into alerts must
never fail because it did.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import ClassVar, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from backstop.config import DatabaseName, Duration
from backstop.errors import BackstopError, InvalidNameError
from backstop.names import parse_backup_id

_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]{1,40}")
_SHOWN_PROBLEMS = 3


class EventRefusedError(BackstopError):
    """An event a function does not take: a key it does not know, a malformed value, or another database."""


class ScheduleInput(BaseModel):
    """A payload one of our schedules sends; ``parse`` refuses anything else in one sentence."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: ClassVar[str]
    """What the payload is, for the refusal (``scheduled backup event``)."""
    carries: ClassVar[str]
    """The keys it may hold, for the refusal."""

    @classmethod
    def parse(cls, event: object) -> Self:
        """``event`` as this model; EventRefusedError says what is wrong, without repeating any value sent."""
        try:
            return cls.model_validate(event)
        except ValidationError as exc:
            problems = [_problem(error) for error in exc.errors()]
            more = len(problems) - _SHOWN_PROBLEMS
            listed = "; ".join(problems[:_SHOWN_PROBLEMS]) + (f"; and {more} more" if more > 0 else "")
            raise EventRefusedError(f"The {cls.kind} is refused: {listed} (it carries {cls.carries} only).") from None


def _problem(error: ErrorDetails) -> str:
    """One problem pydantic found, as a clause: where, and what is wrong (never the value itself)."""
    # A key someone sent may be long or hold control characters: only plain ones are repeated.
    where = ".".join(str(p) if _PLAIN_KEY.fullmatch(str(p)) else "(a key)" for p in error["loc"])
    if error["type"] == "extra_forbidden":
        return f"{where} is not accepted"
    if error["type"] == "missing":
        return f"{where} is missing"
    message = error["msg"].removeprefix("Value error, ").rstrip(".")
    return f"{where}: {message}" if where else message


class DatabaseRef(BaseModel):
    """A database as an event names it: its name, nothing the function would trust."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: DatabaseName


class _DatabaseEvent(ScheduleInput):
    """The input of one database's own schedule: the database's name and the scheduled time.

    The schedule fills ``scheduled_time`` with ``<aws.scheduler.scheduled-time>``, so a retried
    or duplicated delivery names the same time and therefore the same backup id.
    """

    database: DatabaseRef
    scheduled_time: AwareDatetime

    @classmethod
    def for_database(cls, event: object, deployed: str) -> Self:
        """``event`` for the function deployed for database ``deployed``; any other database is refused."""
        request = cls.parse(event)
        if request.database.name != deployed:
            raise EventRefusedError(
                f"The {cls.kind} is refused: it names database {request.database.name}, and this function "
                f"serves {deployed} only."
            )
        return request


class ScheduledBackupEvent(_DatabaseEvent):
    """The input of one database's backup schedule (the backup function has the configuration)."""

    kind = "scheduled backup event"
    carries = "database.name and scheduled_time"


class ScheduledDrillEvent(_DatabaseEvent):
    """The input of one database's drill schedule (the drill function has the configuration, with its
    drill and restore targets, so the run refuses to drill into any of them)."""

    kind = "scheduled drill event"
    carries = "database.name, scheduled_time and an optional backup id"

    backup: str | None = None
    """A backup id of this database to drill instead of the one the drill configuration picks (manual invocations)."""

    @model_validator(mode="after")
    def _backup_of_this_database(self) -> ScheduledDrillEvent:
        if self.backup is not None:
            try:
                parse_backup_id(self.backup, self.database.name)
            except InvalidNameError as exc:
                raise ValueError(str(exc).rstrip(".")) from None
        return self


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
