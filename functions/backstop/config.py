"""Typed models of backstop.yaml, validated once.

Every problem is reported with its path in the file and its line (``backstop.yaml:7: databases[0].name: ...``).
infra/ imports these models to build the stack; nothing here imports the CDK.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import zoneinfo
from datetime import timedelta
from pathlib import Path, PurePath, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backstop.errors import ConfigError, UnknownDatabaseError
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


class Vpc(_Model):
    """The subnets and security groups of a function that must reach a database or file system in a VPC.

    The functions placed there reach AWS through a NAT gateway or VPC endpoints (infra/endpoints.py lists
    what each needs). ``create_endpoints``: the stack creates those endpoints in ``vpc_id``, the S3 and
    DynamoDB gateways on ``route_table_ids`` and the interface endpoints in ``endpoint_subnet_ids`` (default:
    the subnets of every database in that VPC), which must be one per availability zone.
    """

    subnet_ids: tuple[SubnetId, ...]
    security_group_ids: tuple[SecurityGroupId, ...]
    vpc_id: VpcId | None = None
    create_endpoints: Flag = False
    route_table_ids: tuple[RouteTableId, ...] = ()
    endpoint_subnet_ids: tuple[SubnetId, ...] = ()

    @field_validator("subnet_ids", "security_group_ids")
    @classmethod
    def _how_many(cls, ids: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        # A validator, not min_length: pydantic would also report an empty list when one id is malformed.
        most = 16 if info.field_name == "subnet_ids" else 5
        if not 1 <= len(ids) <= most:
            raise ValueError(f"list 1 to {most} ids")
        if len(set(ids)) != len(ids):
            raise ValueError("list each id once")
        return ids

    @field_validator("route_table_ids", "endpoint_subnet_ids")
    @classmethod
    def _listed_once(cls, ids: tuple[str, ...]) -> tuple[str, ...]:
        if len(ids) > 16:
            raise ValueError("list at most 16 ids")
        if len(set(ids)) != len(ids):
            raise ValueError("list each id once")
        return ids

    @model_validator(mode="after")
    def _endpoints_have_their_places(self) -> Vpc:
        if self.create_endpoints:
            needed = {
                "vpc_id": "vpc_id (the VPC the endpoints go in)",
                "route_table_ids": "route_table_ids (its subnets' route tables, for the S3 and DynamoDB gateways)",
            }
            missing = [why for name, why in needed.items() if not getattr(self, name)]
            if missing:
                raise _LocatedError(
                    ("create_endpoints",),
                    f"create_endpoints needs {' and '.join(missing)}: add {'them' if len(missing) > 1 else 'it'}",
                )
            return self
        for name in ("route_table_ids", "endpoint_subnet_ids"):
            if getattr(self, name):
                raise _LocatedError((name,), f"{name} is used only by create_endpoints: true: set it or remove {name}")
        return self

    @property
    def endpoint_settings(self) -> tuple[bool, frozenset[str], frozenset[str]]:
        """What decides the endpoints of ``vpc_id``: every database in that VPC must write the same."""
        return self.create_endpoints, frozenset(self.route_table_ids), frozenset(self.endpoint_subnet_ids)


class Efs(_Model):
    """The EFS access point through which the function reads a SQLite file or a directory."""

    file_system_id: Annotated[str, _matching(_FILE_SYSTEM_ID, "an EFS file system id", "fs-0123456789abcdef0")]
    access_point_id: Annotated[str, _matching(_ACCESS_POINT_ID, "an EFS access point id", "fsap-0123456789abcdef0")]
    mount_path: Annotated[PurePosixPath, _matching(_MOUNT_PATH, "a Lambda mount path", "/mnt/data")]


class _DatabaseBase(_Model):
    name: DatabaseName
    schedule: str = "cron(0 2 * * ? *)"
    timezone: TimeZone = "UTC"
    stale_after: Annotated[Duration, _within(timedelta(minutes=5), timedelta(days=400), "a backup is stale after")] = (
        timedelta(hours=26)
    )
    retention: Retention = Retention()
    compression: Literal["zstd", "gzip"] = "zstd"
    compression_level: WholeNumber | None = Field(default=None, ge=1, le=19)
    function: FunctionLimits = FunctionLimits()
    vpc: Vpc | None = None
    restore_targets: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Where the restore workflow may write: each target the database's own location fields replaced
    (backstop.restore_targets); ``in-place`` (the source itself) only when declared."""

    @field_validator("schedule")
    @classmethod
    def _schedule_is_eventbridge(cls, value: str) -> str:
        if not _SCHEDULE.fullmatch(value):
            raise ValueError(f"{value!r} is not an EventBridge schedule: use cron(m h dom mon dow y) or rate(N unit)")
        return value

    @model_validator(mode="after")
    def _level_fits_algorithm(self) -> _DatabaseBase:
        if self.compression == "gzip" and self.compression_level is not None and self.compression_level > 9:
            raise ValueError(f"compression_level {self.compression_level} is too high for gzip: use 1-9")
        return self

    @model_validator(mode="after")
    def _targets_are_valid(self) -> _DatabaseBase:
        from backstop.restore_targets import resolve_target  # the targets module builds on these models

        for name, overrides in self.restore_targets.items():
            try:
                resolve_target(self, name, overrides)  # type: ignore[arg-type]  # every concrete subclass
            except ConfigError as exc:
                raise _LocatedError(("restore_targets", name), str(exc).rstrip(".")) from None
        return self

    @property
    def level(self) -> int:
        """The compression level actually used (zstd 2 and gzip 6 unless configured)."""
        if self.compression_level is not None:
            return self.compression_level
        return 2 if self.compression == "zstd" else 6


DEPLOYMENT_FIELDS = frozenset({"function", "vpc", "efs", "restore_targets", "drill"})
"""Fields that shape the deployed functions, not the backup: left out of the backup function's own
configuration (``BACKSTOP_DATABASE``, ``infra.schedules.database_environment``); schedules send names only."""


class _Drill(_Model):
    """A scheduled restore drill: a backup really restored where nothing real lives, validated, cleaned up."""

    every: Duration = timedelta(days=7)
    pick: Literal["newest", "random"] = "newest"
    among: WholeNumber = Field(default=5, ge=1, le=100)
    """With ``pick: random``, the drill restores one of the newest ``among`` backups."""
    rto: Annotated[Duration, _within(timedelta(minutes=1), timedelta(days=7), "a drill's rto is")] | None = None
    """The restore-time objective: a drill that takes longer is reported (and alarmed) as too slow."""

    @field_validator("every")
    @classmethod
    def _cadence(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=90) or value.total_seconds() % 60:
            raise ValueError("drill every 1h to 90d, in whole minutes")
        return value


class FileDrill(_Drill):
    """SQLite and directories: restored into a scratch directory (default: the function's own work space)."""

    path: AbsolutePath | None = None


TlsMode = Literal["verify-full", "require", "off"]
LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine by its very spelling: ``localhost`` or an address in 127.0.0.0/8 (or ::1)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def tls_mode_of(host: str, tls: TlsMode | None) -> TlsMode:
    """The TLS a connection to ``host`` uses: ``tls`` as written, else verify-full (off for a loopback host)."""
    if tls is not None:
        return tls
    return "off" if is_loopback(host) else "verify-full"


class _ServerTls(_Model):
    """How a server proves itself before it gets a password (backstop.engines.tls).

    ``tls``: verify-full (TLS, the certificate chains to a trusted CA and names ``host``), require (TLS,
    certificate not checked: a passive eavesdropper learns nothing, an impostor is not stopped) or off. Not
    written: verify-full, except on a loopback host (``localhost``, 127.0.0.0/8), where it is off, because the
    connection never leaves the machine. ``off`` for any other host only where it is written.
    ``tls_ca``: the CA bundle (PEM) verify-full trusts instead of the default, which is the system's bundle
    plus the RDS global bundle where the image carries it.
    """

    tls: TlsMode | None = None
    tls_ca: AbsolutePath | None = None
    if TYPE_CHECKING:  # each subclass declares it
        host: str

    @property
    def tls_mode(self) -> TlsMode:
        return tls_mode_of(self.host, self.tls)

    @model_validator(mode="after")
    def _ca_is_for_verification(self) -> _ServerTls:
        if self.tls_ca is not None and self.tls_mode != "verify-full":
            raise _LocatedError(
                ("tls_ca",), f"tls_ca is used only by tls: verify-full, and tls here is {self.tls_mode}: remove one"
            )
        return self


class DrillServer(_ServerTls):
    """The scratch server a PostgreSQL or MySQL drill restores into (a uniquely named database, always dropped)."""

    host: str
    port: WholeNumber | None = Field(default=None, ge=1, le=65535)
    user: str
    password_secret: str | None = None
    password_env: str | None = None


class ServerDrill(_Drill):
    server: DrillServer


def _overlaps(a: Path, b: Path) -> bool:
    return a == b or a.is_relative_to(b) or b.is_relative_to(a)


class _FileDatabase(_DatabaseBase):
    """A database read from a file system: in AWS, from EFS through an access point."""

    path: AbsolutePath
    efs: Efs | None = None
    drill: FileDrill | None = FileDrill()

    @model_validator(mode="after")
    def _drill_is_scratch(self) -> _FileDatabase:
        scratch = self.drill.path if self.drill else None
        if scratch is None:
            return self
        if self.efs is not None and not PurePosixPath(scratch).is_relative_to(self.efs.mount_path):
            raise _LocatedError(
                ("drill", "path"), f"{str(scratch)!r} is not under the EFS mount path {str(self.efs.mount_path)!r}"
            )
        places = {"the database's own path": self.path} | {
            f"restore target {name}": Path(overrides["path"])
            for name, overrides in self.restore_targets.items()
            if "path" in overrides
        }
        for what, place in places.items():
            if _overlaps(scratch, place):
                raise _LocatedError(
                    ("drill", "path"),
                    f"{str(scratch)!r} overlaps {what} ({str(place)!r}): a drill restores only into scratch space",
                )
        return self

    @model_validator(mode="after")
    def _efs_holds_the_path(self) -> _FileDatabase:
        if self.efs is None:
            return self
        if self.vpc is None:
            raise _LocatedError(
                ("efs",), "a function mounts EFS only inside a VPC: add vpc (subnet_ids, security_group_ids)"
            )
        mount = self.efs.mount_path
        if not PurePosixPath(self.path).is_relative_to(mount) or PurePosixPath(self.path) == mount:
            raise _LocatedError(("path",), f"{str(self.path)!r} is not under the EFS mount path {str(mount)!r}")
        return self


class SqliteDatabase(_FileDatabase):
    """A SQLite database file, copied through the online backup API."""

    engine: Literal["sqlite"]
    integrity_check: Literal["full", "quick"] = "full"
    busy_timeout: Annotated[Duration, _within(timedelta(seconds=1), timedelta(minutes=10), "wait for a lock")] = (
        timedelta(seconds=5)
    )
    lock_retries: WholeNumber = Field(default=3, ge=1, le=20)
    migrations_table: str | None = None
    validation_queries: tuple[str, ...] = ()


class FilesDatabase(_FileDatabase):
    """A plain directory, archived as tar."""

    engine: Literal["files"]
    exclude: tuple[str, ...] = ()


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
_DERIVED_NAME = re.compile(r".*_(pre_)?restore_\d{8}t\d{6}z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")


class _ServerDatabase(_DatabaseBase, _ServerTls):
    """A database on a server, dumped by its own tool. The password is never in this file.

    In AWS the password is fetched at run time from ``password_secret`` (a Secrets Manager ARN,
    either the plain password or a JSON object with a ``password`` key); locally it may come from
    the environment variable named by ``password_env``; with neither, the server must not ask
    (trust, peer, or the tool's own option file).
    """

    host: str
    dbname: str
    user: str
    password_secret: str | None = None
    password_env: str | None = None
    if TYPE_CHECKING:  # each engine declares it with its own default port
        port: int
    connect_timeout: Annotated[Duration, _within(timedelta(seconds=1), timedelta(minutes=5), "wait to connect")] = (
        timedelta(seconds=10)
    )
    lock_wait_timeout: Annotated[Duration, _within(timedelta(seconds=1), timedelta(hours=1), "wait for a lock")] = (
        timedelta(seconds=30)
    )
    exact_count_limit: WholeNumber = Field(default=1_000_000, ge=0, le=10**12)
    validation_queries: tuple[str, ...] = ()
    drill: ServerDrill | None = None
    """Drills of a server database need a scratch server: none unless one is configured."""

    @model_validator(mode="after")
    def _drill_is_scratch(self) -> _ServerDatabase:
        if self.drill is None:
            return self
        server = self.drill.server
        scratch = (server.host, server.port or self.port)
        places = {"the database's own server": (self.host, self.port)} | {
            f"restore target {name}": (overrides.get("host", self.host), overrides.get("port", self.port))
            for name, overrides in self.restore_targets.items()
        }
        for what, place in places.items():
            if scratch == place:
                raise _LocatedError(
                    ("drill", "server"),
                    f"{scratch[0]}:{scratch[1]} is {what}: a drill restores only into a scratch server",
                )
        return self

    @field_validator("host")
    @classmethod
    def _host_shape(cls, value: str) -> str:
        if not _HOST.fullmatch(value):
            raise ValueError(f"{value!r} is not a host name or address")
        return value

    @field_validator("dbname", "user")
    @classmethod
    def _sql_name(cls, value: str) -> str:
        if not _SQL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a plain database or user name (letters, digits, _, $, -)")
        return value

    @field_validator("dbname")
    @classmethod
    def _not_derived(cls, value: str) -> str:
        # Restores name their fresh and kept databases so; pruning drops old pre-restore ones by that name.
        if _DERIVED_NAME.fullmatch(value):
            raise ValueError(
                f"{value!r} is named like a database a restore derives (<target>_restore_<time>, "
                "<target>_pre_restore_<time>): choose another name"
            )
        return value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not an environment variable name")
        return value

    @field_validator("password_secret")
    @classmethod
    def _secret_arn(cls, value: str | None) -> str | None:
        if value is not None and not _SECRET_ARN.fullmatch(value):
            raise ValueError("password_secret must be a Secrets Manager secret ARN (never the password itself)")
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> _ServerDatabase:
        if self.password_secret and self.password_env:
            raise ValueError("set password_secret or password_env, not both")
        return self


class PostgresDatabase(_ServerDatabase):
    """A PostgreSQL database, dumped with ``pg_dump --format=custom`` in one exported snapshot."""

    engine: Literal["postgres"]
    port: WholeNumber = Field(default=5432, ge=1, le=65535)
    app_role: str | None = None
    """The role the application connects as. A restore runs its validation queries as this role (``SET ROLE``,
    in a read-only transaction), so a restore that lost the application's access fails before the swap."""

    @field_validator("app_role")
    @classmethod
    def _role_name(cls, value: str | None) -> str | None:
        if value is not None and not _SQL_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a plain role name (letters, digits, _, $, -)")
        return value


class MysqlDatabase(_ServerDatabase):
    """A MySQL or MariaDB database, dumped with ``--single-transaction`` (InnoDB tables are consistent)."""

    engine: Literal["mysql"]
    port: WholeNumber = Field(default=3306, ge=1, le=65535)


ServerDatabase = PostgresDatabase | MysqlDatabase
AnyDatabase = SqliteDatabase | FilesDatabase | PostgresDatabase | MysqlDatabase
Database = Annotated[AnyDatabase, Field(discriminator="engine")]


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+")


class Alerts(_Model):
    """Who hears about failed and stale backups: each address receives the alerts topic by email."""

    emails: tuple[str, ...] = ()

    @field_validator("emails")
    @classmethod
    def _addresses(cls, emails: tuple[str, ...]) -> tuple[str, ...]:
        for index, email in enumerate(emails):
            if not _EMAIL.fullmatch(email):
                raise _LocatedError((index,), f"{email!r} is not an email address")
        return emails


class ObjectLock(_Model):
    """S3 Object Lock on the vault: every artifact and manifest is locked, when written, until its own
    tier expires (a yearly backup for its years, a daily one for its days), in ``mode``.

    governance: only an administrator allowed s3:BypassGovernanceRetention (``storage.administrators``)
    can delete early; compliance: nobody can, not even the account's root user, until the retention
    ends. ``days``, when set, is also the bucket's default retention for versions written by anyone
    else. Once on, Object Lock stays on.
    """

    mode: Literal["governance", "compliance"] = "governance"
    days: WholeNumber | None = Field(default=None, ge=1, le=36500)


_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}")
_ACCOUNT = re.compile(r"\d{12}")


class Replica(_Model):
    """A second copy of every committed backup, out of reach of what can befall the vault's region or account.

    S3 replicates the vault's history (artifacts, manifests, their tags and lock retention; never a
    delete) into ``bucket`` in ``region``, a bucket of its own stack (``BackstopReplica``) with its own
    KMS key, the same lifecycle rules and Object Lock always on. ``account``: the replica's account when
    it is not the vault's; the replica then trusts ``vault_account`` to replicate into it and to check
    it, and nothing else of that account. Read it with ``backstop --bucket <bucket> list / verify / restore``.
    """

    bucket: str
    region: str
    account: str | None = None
    vault_account: str | None = None
    object_lock: ObjectLock = ObjectLock()
    """Every replicated version is locked at least this long (``days``; by default as long as lifecycle keeps
    the shortest-lived backup version), or as long as the vault locked it, whichever S3 replicates."""
    allowed_lag: Duration = timedelta(hours=6)
    """How far the replica may trail the vault before freshness alerts (the database's ``stale_after`` plus this)."""
    administrators: tuple[str, ...] = ()
    """Roles of the replica's account that may change its configuration or delete and re-tag what it holds."""

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return _bucket(value)

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not _REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name (like eu-west-1)")
        return value

    @field_validator("account", "vault_account")
    @classmethod
    def _account_id(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.fullmatch(value):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id (quote it in YAML)")
        return value

    @field_validator("allowed_lag")
    @classmethod
    def _lag(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=15) <= value <= timedelta(days=7):
            raise ValueError("allow the replica 15m to 7d of lag")
        return value

    @field_validator("administrators")
    @classmethod
    def _role_arns(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        return _role_arns(roles)

    @model_validator(mode="after")
    def _accounts(self) -> Replica:
        if (self.account is None) != (self.vault_account is None):
            raise ValueError(
                "set account and vault_account together (a replica in another account must know which "
                "account's vault replicates into it), or neither (the replica is in the vault's account)"
            )
        return self

    @property
    def cross_account(self) -> bool:
        return self.account is not None and self.account != self.vault_account


def _bucket(value: str) -> str:
    if not _BUCKET.fullmatch(value) or ".." in value or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        raise ValueError(f"{value!r} is not a valid S3 bucket name")
    return value


def _role_arns(roles: tuple[str, ...]) -> tuple[str, ...]:
    for index, arn in enumerate(roles):
        if not _ROLE_ARN.fullmatch(arn):
            raise _LocatedError((index,), f"{arn!r} is not an IAM role ARN")
    return roles


class Storage(_Model):
    """How the vault bucket keeps what the retention tiers do not decide."""

    cold_after_days: WholeNumber = Field(default=30, ge=1, le=3650)
    yearly_storage_class: Literal["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"] = "GLACIER_IR"
    noncurrent_days: WholeNumber = Field(default=30, ge=1, le=3650)
    access_log_days: WholeNumber = Field(default=365, ge=1, le=3650)
    object_lock: ObjectLock | None = None
    writers: tuple[str, ...] = ()
    administrators: tuple[str, ...] = ()
    """Roles (ARNs, ``*`` allowed in the name) that may change the vault's configuration, delete or
    re-tag backups and bypass governance locks; besides them only CloudFormation's deploy role may."""

    replica: Replica | None = None

    @field_validator("writers", "administrators")
    @classmethod
    def _role_arns(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        return _role_arns(roles)


class FreshnessCheck(_Model):
    """How often the deployed freshness check compares each database's newest backup with its ``stale_after``."""

    every: Duration = timedelta(hours=1)

    @field_validator("every")
    @classmethod
    def _whole_minutes(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= value <= timedelta(hours=12) or value.total_seconds() % 60:
            raise ValueError("run the freshness check every 5m to 12h, in whole minutes")
        return value


APPROVER_PATTERN = re.compile(r"arn:aws[a-z-]*:(iam::\d{12}:user|sts::\d{12}:assumed-role)/[\w+=,.@/*-]{1,400}")


class KeepPreRestore(_Model):
    """How many of a target's pre-restore copies a restore keeps: what it replaced, beside the target.

    ``<target>.pre-restore-<time>`` (files, directories) and ``<dbname>_pre_restore_<time>``
    (server databases). After a restore succeeds, the copies older than its own that completed
    restores left are pruned down to the newest ``count`` no older than ``days`` (no age limit when
    ``days`` is null); the newest completed copy is always kept, and never the copy of a restore
    that is still running or failed (docs/runbooks/restore.md).
    """

    count: WholeNumber = Field(default=3, ge=1, le=1000)
    days: WholeNumber | None = Field(default=14, ge=1, le=3650)


class RestoreSettings(_Model):
    """How the restore workflow asks for approval, and what restores keep of what they replace."""

    approval_timeout: Duration = timedelta(hours=24)
    distinct_approver: Flag = False
    """Refuse an approval by the identity that requested the restore (four eyes)."""
    approvers: tuple[str, ...] = ()
    """Principal ARNs (``*`` matches any run of characters) that may approve; empty: anyone who may invoke the
    approval function. ``arn:aws:iam::111122223333:user/alice``, ``arn:aws:sts::111122223333:assumed-role/DBA/*``."""
    safety_snapshot_days: WholeNumber = Field(default=30, ge=1, le=3650)
    """How long lifecycle keeps a restore's safety snapshot of its target."""
    keep_pre_restore: KeepPreRestore = KeepPreRestore()

    @field_validator("approvers")
    @classmethod
    def _principal_arns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not APPROVER_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{pattern[:100]!r} is not a principal ARN: use arn:aws:iam::ACCOUNT:user/NAME or "
                    "arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION (* for any part)"
                )
        return value

    @field_validator("approval_timeout")
    @classmethod
    def _reasonable_wait(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= value <= timedelta(days=7) or value.total_seconds() % 60:
            raise ValueError("wait 5m to 7d for an approval, in whole minutes")
        return value


class Sweep(_Model):
    """The scheduled verification sweep: re-reads stored backups within a byte budget per run."""

    every: Duration = timedelta(days=1)
    budget: Annotated[ByteSize, BeforeValidator(_size)] = ByteSize(10 * 1024**3)
    """Bytes re-read per run, 1B to 1PiB (``10GiB``, ``500MB`` or a number of bytes)."""
    repair: Flag = False
    """`backstop sweep` repairs a backup whose key it finds overwritten (and alerts what it did). Off by
    default, and for the command only: repair deletes object versions, which the vault's bucket policy
    refuses to every role but ``storage.administrators``, so it runs with an administrator's credentials.
    The deployed sweep function alerts and repairs nothing (synth warns when this is on)."""

    @field_validator("every")
    @classmethod
    def _cadence(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=30) or value.total_seconds() % 60:
            raise ValueError("sweep every 1h to 30d, in whole minutes")
        return value

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: ByteSize) -> ByteSize:
        if not 1 <= value <= LARGEST_BUDGET:
            raise ValueError("a sweep budget is 1B to 1PiB: with none, every sweep fails")
        return value


class Runner(_Model):
    """The deployed functions' container image and logs."""

    architecture: Literal["x86_64", "arm64"] = "x86_64"
    log_retention_days: Annotated[
        Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653],
        BeforeValidator(_whole_number),
    ] = 90


class Config(_Model):
    """The whole of backstop.yaml."""

    stack_name: str = Field(default="Backstop", pattern=r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
    """The CloudFormation stack (and the prefix of its alarms, roles' IAM paths and the restore state machine):
    one configuration per stack, so several vaults can live in one account and region."""
    bucket: str
    prefix: str = "backups"
    kms_key_id: str | None = None
    alerts_topic_arn: str | None = None
    work_dir: AbsolutePath | None = None
    upload: Upload = Upload()
    alerts: Alerts = Alerts()
    storage: Storage = Storage()
    freshness: FreshnessCheck = FreshnessCheck()
    runner: Runner = Runner()
    restore: RestoreSettings = RestoreSettings()
    sweep: Sweep = Sweep()
    databases: tuple[Database, ...]

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return _bucket(value)

    @model_validator(mode="after")
    def _derived_names_apart(self) -> Config:
        from backstop.restore_targets import name_clash  # the targets module builds on these models

        clash = name_clash(self.databases)
        if clash is not None:
            raise _LocatedError(*clash)
        return self

    @model_validator(mode="after")
    def _one_vpc_one_set_of_endpoints(self) -> Config:
        # The endpoints of a VPC are created once, and their private DNS serves every function in it.
        vpc_of_subnet: dict[str, tuple[int, str | None]] = {}
        first_in_vpc: dict[str, int] = {}
        for index, db in enumerate(self.databases):
            if db.vpc is None:
                continue
            vpc_id = db.vpc.vpc_id
            for subnet in db.vpc.subnet_ids:
                other, other_vpc = vpc_of_subnet.setdefault(subnet, (index, vpc_id))
                if other_vpc != vpc_id:
                    named = other_vpc or vpc_id
                    raise _LocatedError(
                        ("databases", index, "vpc"),
                        f"{subnet} is also a subnet of databases[{other}], whose vpc_id is {other_vpc or 'not set'}: "
                        f"write vpc_id: {named} and the same endpoint settings in both",
                    )
            if vpc_id is None:
                continue
            first = first_in_vpc.setdefault(vpc_id, index)
            first_vpc = self.databases[first].vpc
            if first_vpc is not None and db.vpc.endpoint_settings != first_vpc.endpoint_settings:
                raise _LocatedError(
                    ("databases", index, "vpc"),
                    f"{vpc_id} is also the VPC of databases[{first}], with other endpoint settings (create_endpoints, "
                    "route_table_ids, endpoint_subnet_ids): a VPC's endpoints are created once, so write the same "
                    "settings in both",
                )
        return self

    @model_validator(mode="after")
    def _replica_elsewhere(self) -> Config:
        if self.storage.replica is not None and self.storage.replica.bucket == self.bucket:
            raise ValueError("storage.replica.bucket must be another bucket than the vault's own bucket")
        return self

    @field_validator("prefix")
    @classmethod
    def _prefix_shape(cls, value: str) -> str:
        value = value.rstrip("/")
        if not _PREFIX.fullmatch(value) or ".." in value.split("/"):
            raise ValueError(f"{value!r} is not a valid key prefix: use letters, digits, '.', '_', '-' and '/'")
        return value

    @field_validator("databases")
    @classmethod
    def _named_once(cls, databases: tuple[Database, ...]) -> tuple[Database, ...]:
        if not databases:
            raise ValueError("list at least one database")
        first: dict[str, int] = {}
        for index, db in enumerate(databases):
            if db.name in first:
                raise _LocatedError((index, "name"), f"{db.name!r} is already the name of databases[{first[db.name]}]")
            first[db.name] = index
        return databases

    def database(self, name: str) -> AnyDatabase:
        """The database called ``name``; UnknownDatabaseError names the ones that exist."""
        for db in self.databases:
            if db.name == name:
                return db
        known = ", ".join(db.name for db in self.databases)
        raise UnknownDatabaseError(f"No database named {name!r} in the configuration (known: {known}).")


def resolve_config_path(explicit: Path | None) -> Path:
    """``--config FILE``, else ``$BACKSTOP_CONFIG``, else ``./backstop.yaml``."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG


def load_config(path: Path) -> Config:
    """Read and validate ``path``; ConfigError lists every problem with its location in the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"Configuration file {str(path)!r} not found: pass --config FILE or set ${CONFIG_ENV}."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Configuration file {str(path)!r} cannot be read: {exc.strerror}.") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "backstop.yaml") -> Config:
    """Validate YAML text; see ``load_config``."""
    try:
        data = yaml.safe_load(text)
        tree = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(f"{where}: {problem}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with at least 'bucket' and 'databases'.")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = [_describe(error, tree, source) for error in exc.errors()]
        raise ConfigError(f"{source} is invalid: " + "; ".join(problems)) from None


_ENGINE_TAGS = {"sqlite", "files", "postgres", "mysql"}
_PLAIN_KEY = re.compile(r"[!-~]{1,64}")
"""A key shown as it is in a message (printable, no space); any other (a newline ...) is shown quoted and bounded."""


def _describe(error: Any, tree: yaml.Node | None, source: str) -> str:
    loc: list[str | int] = []
    located = (error.get("ctx") or {}).get("error")
    subpath = located.subpath if isinstance(located, _LocatedError) else ()
    for i, part in enumerate(error["loc"]):
        # pydantic puts the discriminator value in the path of a tagged union; the file has no such level
        if isinstance(part, str) and part in _ENGINE_TAGS and i > 0 and isinstance(error["loc"][i - 1], int):
            continue
        loc.append(part)
    loc.extend(subpath)
    dotted = ""
    for part in loc:
        shown = part if isinstance(part, int) or _PLAIN_KEY.fullmatch(part) else _shown(part)
        dotted += f"[{shown}]" if isinstance(part, int) else (f".{shown}" if dotted else str(shown))
    line = _line_of(tree, loc)
    where = f"{source}:{line}" if line else source
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
        message = f"engine must be one of {', '.join(sorted(_ENGINE_TAGS))}"
    elif error["type"] == "missing":
        message = "required field is missing"
    return f"{where}: {dotted or '(top level)'}: {message}"


def _line_of(node: yaml.Node | None, loc: list[str | int]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            match = next((v for k, v in node.value if getattr(k, "value", None) == part), None)
            if match is None:
                return line
            node = match
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return line
        line = node.start_mark.line + 1
    return line
