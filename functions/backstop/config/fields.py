"""Field types of backstop.yaml shared by every model: durations, sizes, strict numbers and flags, ids,
and the settings every database carries (retention, upload tuning, function limits).
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import timedelta
from pathlib import Path, PurePath, PurePosixPath
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    field_validator,
)

from backstop.names import DATABASE_NAME

CONFIG_ENV = "BACKSTOP_CONFIG"
DEFAULT_CONFIG = Path("backstop.yaml")

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
LONGEST_DURATION = timedelta(days=3650)
"""No duration in backstop.yaml is longer (each field has its own, narrower range too)."""


def parse_duration(value: object) -> timedelta:
    """Parse ``26h``, ``90m``, ``1d12h``, ``30s``, ``2w`` (or a number of seconds) into a timedelta.

    ValueError, never OverflowError, for anything not longer than zero and at most ``LONGEST_DURATION``.
    """
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        total = value
    elif isinstance(value, str):
        text = value.strip()
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            raise ValueError(
                f"{_shown(value)} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 26h or 1d12h"
            )
        if any(len(number) > 12 for number, _ in parts):  # int() of thousands of digits is itself an error
            raise ValueError(f"{_shown(value)} is longer than {LONGEST_DURATION.days}d, the longest duration allowed")
        total = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    else:
        raise ValueError("expected a duration such as 26h, 90m or 1d12h")
    if total <= 0:
        raise ValueError("a duration must be longer than zero")
    if total > LONGEST_DURATION.total_seconds():
        raise ValueError(f"{_shown(value)} is longer than {LONGEST_DURATION.days}d, the longest duration allowed")
    return timedelta(seconds=total)


def _shown(value: object) -> str:
    """A bounded rendering of a refused value (it may be 5000 digits long)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _within(low: timedelta, high: timedelta, what: str) -> AfterValidator:
    """A duration field's own range, refused in one sentence naming it."""

    def check(value: timedelta) -> timedelta:
        if not low <= value <= high:
            raise ValueError(f"{what} {format_duration(low)} to {format_duration(high)}")
        return value

    return AfterValidator(check)


def _whole_number(value: object) -> object:
    """Refuse what pydantic's lax mode would turn into a number: ``true`` (1), ``4.0``, ``"12"``."""
    if isinstance(value, bool | float | str):
        raise ValueError(f"expected a whole number, not {_yaml_scalar(value)}")
    return value


def _yaml_scalar(value: object) -> str:
    """How a refused scalar was written in the file: ``true``, ``4.0``, ``'12'``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _shown(value)


def _absolute_path(value: object) -> object:
    """A path written from ``/``, without ``..``: what a relative path means depends on where backstop runs."""
    if not isinstance(value, str | PurePath):
        return value  # the Path type reports it
    text = str(value)
    if "\x00" in text or len(text) > 4096:
        raise ValueError(f"{_shown(text)} is not a usable path (a NUL byte, or longer than 4096 characters)")
    path = PurePosixPath(text)
    if not path.is_absolute():
        raise ValueError(
            f"{_shown(text)} is not an absolute path: write it from / (a relative one depends on where backstop runs)"
        )
    if ".." in path.parts:
        raise ValueError(f"{_shown(text)} contains '..': write the path without it")
    return value


AbsolutePath = Annotated[Path, BeforeValidator(_absolute_path)]
LARGEST_BUDGET = 1024**5


def _size(value: object) -> object:
    """Refuse what ByteSize would read as a number of bytes without being one (``true`` is 1 byte, ``1.5`` ...)."""
    if isinstance(value, bool | float):
        raise ValueError(f"expected a size such as 10GiB or a number of bytes, not {_yaml_scalar(value)}")
    return value


def _flag(value: object) -> object:
    """Refuse what pydantic's lax mode would turn into a boolean: ``1``, ``"yes"``, ``"true"``."""
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, not {_yaml_scalar(value)}")
    return value


WholeNumber = Annotated[StrictInt, BeforeValidator(_whole_number)]
Flag = Annotated[StrictBool, BeforeValidator(_flag)]


def format_duration(value: timedelta) -> str:
    """The shortest text ``parse_duration`` reads back as ``value``: one number in the largest exact unit (``26h``)."""
    seconds = int(value.total_seconds())
    for unit in ("w", "d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"


# Serialised back in the file's own notation, so a dumped database (a schedule's input) validates again.
Duration = Annotated[
    timedelta, BeforeValidator(parse_duration), PlainSerializer(format_duration, return_type=str, when_used="json")
]
DatabaseName = Annotated[str, Field(pattern="^" + DATABASE_NAME.pattern + "$")]

_SCHEDULE = re.compile(r"(cron\((\S+ ){5}\S+\)|rate\(\d+ (minute|minutes|hour|hours|day|days)\)|at\(\S+\))")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*")


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class _LocatedError(ValueError):
    """A problem found by a validator of a list, located at an element inside it (``subpath``)."""

    def __init__(self, subpath: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.subpath = subpath


class Retention(_Model):
    """How many of each tier to keep, in the tier's own unit (7 daily = 7 days, 4 weekly = 4 weeks ...)."""

    daily: WholeNumber = Field(default=7, ge=1, le=3650)
    weekly: WholeNumber = Field(default=4, ge=0, le=520)
    monthly: WholeNumber = Field(default=12, ge=0, le=1200)
    yearly: WholeNumber = Field(default=3, ge=0, le=100)
    keep_last: WholeNumber = Field(default=3, ge=1, le=1000)
    """The newest good backups kept whatever their age (an outage of any length leaves them in place)."""


class Upload(_Model):
    """Multipart upload tuning: memory in flight is about part_size_mb x (concurrency + 1)."""

    part_size_mb: WholeNumber = Field(default=16, ge=5, le=512)
    concurrency: WholeNumber = Field(default=4, ge=1, le=32)


@functools.cache
def _zone_names() -> frozenset[str]:
    """The installed zone database's names, read once: scanning it costs ~40 ms, and every target revalidates one."""
    return frozenset(zoneinfo.available_timezones())


def _known_timezone(value: object) -> object:
    """An IANA time zone name, checked against the zone database wherever one is installed (always at synth)."""
    if not isinstance(value, str):
        return value  # the str type reports it
    if not _TIMEZONE.fullmatch(value):
        raise ValueError(f"{value!r} is not a time zone name: use an IANA name such as UTC or Europe/Paris")
    known = _zone_names()
    if known and value not in known:
        raise ValueError(f"{value!r} is not a known time zone: use an IANA name such as UTC or Europe/Paris")
    return value


TimeZone = Annotated[str, BeforeValidator(_known_timezone)]


class FunctionLimits(_Model):
    """The AWS Lambda function that backs one database up: its memory, time limit and /tmp space.

    The function's CPU share grows with its memory (one vCPU at 1769 MB). SQLite snapshots and
    directory archives are staged in /tmp, so ``ephemeral_storage_mb`` bounds the database size.
    """

    memory_mb: WholeNumber = Field(default=2048, ge=128, le=10240)
    timeout: Duration = timedelta(minutes=15)
    ephemeral_storage_mb: WholeNumber = Field(default=2048, ge=512, le=10240)

    @field_validator("timeout")
    @classmethod
    def _lambda_limit(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=10) <= value <= timedelta(minutes=15):
            raise ValueError("a Lambda function runs between 10s and 15m: choose a timeout in that range")
        return value


_SUBNET_ID = re.compile(r"subnet-[0-9a-f]{8}([0-9a-f]{9})?")
_SECURITY_GROUP_ID = re.compile(r"sg-[0-9a-f]{8}([0-9a-f]{9})?")
_VPC_ID = re.compile(r"vpc-[0-9a-f]{8}([0-9a-f]{9})?")
_ROUTE_TABLE_ID = re.compile(r"rtb-[0-9a-f]{8}([0-9a-f]{9})?")
_FILE_SYSTEM_ID = re.compile(r"fs-[0-9a-f]{8}([0-9a-f]{9})?")
_ACCESS_POINT_ID = re.compile(r"fsap-[0-9a-f]{17}")
_MOUNT_PATH = re.compile(r"/mnt/[A-Za-z0-9._-]+")
_TIMEZONE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}")


def _matching(pattern: re.Pattern[str], what: str, example: str) -> BeforeValidator:
    def check(value: object) -> object:
        if isinstance(value, str) and not pattern.fullmatch(value):
            raise ValueError(f"{value!r} is not {what} (like {example})")
        return value

    return BeforeValidator(check)


SubnetId = Annotated[str, _matching(_SUBNET_ID, "a subnet id", "subnet-0123456789abcdef0")]
SecurityGroupId = Annotated[str, _matching(_SECURITY_GROUP_ID, "a security group id", "sg-0123456789abcdef0")]
VpcId = Annotated[str, _matching(_VPC_ID, "a VPC id", "vpc-0123456789abcdef0")]
RouteTableId = Annotated[str, _matching(_ROUTE_TABLE_ID, "a route table id", "rtb-0123456789abcdef0")]
