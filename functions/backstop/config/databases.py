"""The database entries of backstop.yaml: SQLite files, directories, PostgreSQL and MySQL servers, with
their network, file system, TLS and drill settings. Their restore targets are resolved by
``config.targets``, and checked against each other by ``Config``.
"""

from __future__ import annotations

import ipaddress
import re
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from backstop.config.fields import (
    _ACCESS_POINT_ID,
    _FILE_SYSTEM_ID,
    _MOUNT_PATH,
    _SCHEDULE,
    AbsolutePath,
    DatabaseName,
    Duration,
    Flag,
    FunctionLimits,
    Retention,
    RouteTableId,
    SecurityGroupId,
    SubnetId,
    TimeZone,
    VpcId,
    WholeNumber,
    _LocatedError,
    _matching,
    _Model,
    _within,
)


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
    (backstop.config.targets); ``in-place`` (the source itself) only when declared."""

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
            if isinstance(overrides.get("path"), str)  # a target's own validation refuses any other (Config)
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
