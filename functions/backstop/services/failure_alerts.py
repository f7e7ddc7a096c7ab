"""Alerts for runs that failed where the backup service could not report them itself.

A timeout, an out-of-memory kill or a crash ends the function before ``BackupService`` can publish,
and a schedule that cannot invoke its target never reaches it at all. AWS keeps a record of both:
Lambda's OnFailure destination record, and the message EventBridge Scheduler leaves in the
schedule's dead-letter queue. This module turns either into one alert.

Nothing is forwarded wholesale: the alert is built from picked fields only (the database name
through its allow-list, the scheduled time as a parsed time, the error type through a pattern, and
a short error message with anything credential-like redacted), so a payload that carries more than
it should cannot leak it into an alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, JsonValue, TypeAdapter, ValidationError

from backstop.events import AsyncInvocationRecord
from backstop.names import DATABASE_NAME, backup_id_for
from backstop.ports import Notifier

MESSAGE_LIMIT = 300
_ERROR_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,99}")
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:[A-Za-z0-9_/:.$-]{1,200}")
_TIME = TypeAdapter(AwareDatetime)
# ``password=...``, ``PGPASSWORD: ...``, ``"api_token": "..."``, ``Authorization: Bearer ...`` and the like.
_SECRET_FIELD = re.compile(
    r"(?i)(\b[\w-]*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|credentials?|authorization)[\w-]*"
    r"[\"']?\s*[:=]\s*)(?:bearer\s+)?(?:\"[^\"]*\"|'[^']*'|[^\s\"',;}]+)"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")
_AWS_KEY_ID = re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b")
_PEM = re.compile(r"-----BEGIN [A-Z ]+-----.*?(-----END [A-Z ]+-----|$)")

Detector = Literal["lambda-on-failure-destination", "scheduler-dead-letter-queue"]


@dataclass(frozen=True)
class FailedRun:
    """One run that failed without its own report, as far as the failure record tells."""

    detected_by: Detector
    error_type: str
    message: str
    database: str | None = None
    scheduled_time: datetime | None = None
    attempts: int | None = None
    condition: str | None = None
    source_arn: str | None = None

    @property
    def backup_id(self) -> str | None:
        """The id the backup would have had (deterministic from database and scheduled time)."""
        if self.database is None or self.scheduled_time is None:
            return None
        return backup_id_for(self.database, self.scheduled_time)


def from_destination_record(record: AsyncInvocationRecord) -> FailedRun | None:
    """The failed run an OnFailure destination record describes; None for a success record."""
    context = record.request_context
    if context.condition == "Success":
        return None
    error = record.response_payload if isinstance(record.response_payload, dict) else {}
    if context.condition == "EventAgeExceeded":
        default_type, default_message = "EventAgeExceeded", "The invocation waited too long in Lambda's queue to run."
    else:
        default_type, default_message = "FunctionError", "The function failed without an error message."
    database, scheduled = _picked(record.request_payload)
    return FailedRun(
        detected_by="lambda-on-failure-destination",
        error_type=safe_error_type(error.get("errorType"), default_type),
        message=safe_message(error.get("errorMessage"), default_message),
        database=database,
        scheduled_time=scheduled,
        attempts=context.approximate_invoke_count or None,
        condition=context.condition or None,
        source_arn=_arn(context.function_arn),
    )


def from_queue_message(body: str, attributes: Mapping[str, str]) -> FailedRun | None:
    """The failed run an SQS message describes: a schedule's dead-letter message, or a destination record.

    A dead-letter message's body is the schedule's input and Scheduler's attributes say what went
    wrong; the body may have been truncated (``IS_PAYLOAD_TRUNCATED``), so it is read on a
    best-effort basis and the scheduled time can come from the ``SCHEDULED_TIME`` attribute. A body
    that is a Lambda destination record (OnFailure routed through a queue) is read as one.
    """
    try:
        payload: JsonValue = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "requestContext" in payload and "requestPayload" in payload:
        try:
            return from_destination_record(AsyncInvocationRecord.model_validate(payload))
        except ValidationError:
            payload = None  # not a record after all: alert with what the attributes say
    database, scheduled = _picked(payload)
    retries = attributes.get("RETRY_ATTEMPTS", "")
    return FailedRun(
        detected_by="scheduler-dead-letter-queue",
        error_type=safe_error_type(attributes.get("ERROR_CODE"), "SchedulerDeliveryFailed"),
        message=safe_message(attributes.get("ERROR_MESSAGE"), "EventBridge Scheduler could not invoke the target."),
        database=database,
        scheduled_time=scheduled or _time(attributes.get("SCHEDULED_TIME")),
        attempts=int(retries) + 1 if retries.isdigit() else None,
        condition=safe_error_type(attributes.get("EXHAUSTED_RETRY_CONDITION"), "") or None,
        source_arn=_arn(attributes.get("SCHEDULE_ARN")) or _arn(attributes.get("TARGET_ARN")),
    )


class FailureAlertService:
    """Publishes one alert per failed run to the alerts topic."""

    def __init__(self, notifier: Notifier) -> None:
        self._notifier = notifier

    def alert(self, run: FailedRun) -> None:
        """Publish the alert of ``run``; with a strict notifier, AlertDeliveryError if it could not be sent."""
        what = f"backup of {run.database}" if run.database else "scheduled invocation"
        self._notifier.publish(
            f"Backstop: {what} failed ({run.error_type})",
            {
                "event": "backup_failed" if run.database else "invocation_failed",
                "database": run.database,
                "backup_id": run.backup_id,
                "scheduled_time": run.scheduled_time.isoformat() if run.scheduled_time else None,
                "error": run.error_type,
                "message": run.message,
                "detected_by": run.detected_by,
                "attempts": run.attempts,
                "condition": run.condition,
                "source": run.source_arn,
            },
        )


def safe_error_type(value: object, default: str) -> str:
    """An error type as AWS or Python names it (``Sandbox.Timedout``, ``IntegrityError``), else ``default``."""
    return value if isinstance(value, str) and _ERROR_TYPE.fullmatch(value) else default


def safe_message(value: object, default: str) -> str:
    """One line of at most MESSAGE_LIMIT characters, with credential-like values redacted."""
    if not isinstance(value, str) or not value.strip():
        return default
    text = " ".join(value.split())
    text = _SECRET_FIELD.sub(r"\1[redacted]", text)
    text = _URL_USERINFO.sub(r"\1[redacted]@", text)
    text = _AWS_KEY_ID.sub("[redacted]", text)
    text = _PEM.sub("[redacted]", text)
    return text if len(text) <= MESSAGE_LIMIT else text[: MESSAGE_LIMIT - 3] + "..."


def _picked(payload: JsonValue) -> tuple[str | None, datetime | None]:
    """The database name and scheduled time of a schedule input, each only if it has the expected shape."""
    if not isinstance(payload, dict):
        return None, None
    database = payload.get("database")
    name = database.get("name") if isinstance(database, dict) else None
    valid_name = name if isinstance(name, str) and DATABASE_NAME.fullmatch(name) else None
    return valid_name, _time(payload.get("scheduled_time") or payload.get("checked_at"))


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return _TIME.validate_python(value).astimezone(UTC)
    except ValidationError:
        return None


def _arn(value: object) -> str | None:
    return value if isinstance(value, str) and _ARN.fullmatch(value) else None
