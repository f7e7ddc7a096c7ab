"""Typed models of backstop.yaml, validated once.

Every problem is reported with its path in the file and its line (``backstop.yaml:7: databases[0].name: ...``).
infra/ imports these models to build the stack; nothing here imports the CDK.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from backstop.errors import ConfigError, UnknownDatabaseError
from backstop.names import DATABASE_NAME

CONFIG_ENV = "BACKSTOP_CONFIG"
DEFAULT_CONFIG = Path("backstop.yaml")

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Parse ``26h``, ``90m``, ``1d12h``, ``30s``, ``2w`` (or a number of seconds) into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 26h, 90m or 1d12h")
    text = value.strip()
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{value!r} is not a duration: use a number and a unit (s, m, h, d, w), e.g. 26h or 1d12h")
    total = sum(int(n) * _UNIT_SECONDS[u] for n, u in parts)
    if total <= 0:
        raise ValueError("a duration must be longer than zero")
    return timedelta(seconds=total)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
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

    daily: int = Field(default=7, ge=1, le=3650)
    weekly: int = Field(default=4, ge=0, le=520)
    monthly: int = Field(default=12, ge=0, le=1200)
    yearly: int = Field(default=3, ge=0, le=100)


class Upload(_Model):
    """Multipart upload tuning: memory in flight is about part_size_mb x (concurrency + 1)."""

    part_size_mb: int = Field(default=16, ge=5, le=512)
    concurrency: int = Field(default=4, ge=1, le=32)


class _DatabaseBase(_Model):
    name: DatabaseName
    schedule: str = "cron(0 2 * * ? *)"
    timezone: str = "UTC"
    stale_after: Duration = timedelta(hours=26)
    retention: Retention = Retention()
    compression: Literal["zstd", "gzip"] = "zstd"
    compression_level: int | None = Field(default=None, ge=1, le=19)

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
        """The compression level actually used (zstd 3 and gzip 6 unless configured)."""
        if self.compression_level is not None:
            return self.compression_level
        return 3 if self.compression == "zstd" else 6


class SqliteDatabase(_DatabaseBase):
    """A SQLite database file, copied through the online backup API."""

    engine: Literal["sqlite"]
    path: Path
    integrity_check: Literal["full", "quick"] = "full"
    busy_timeout: Duration = timedelta(seconds=5)
    lock_retries: int = Field(default=3, ge=1, le=20)
    migrations_table: str | None = None
    validation_queries: tuple[str, ...] = ()


class FilesDatabase(_DatabaseBase):
    """A plain directory, archived as tar."""

    engine: Literal["files"]
    path: Path
    exclude: tuple[str, ...] = ()


_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_SQL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")


class _ServerDatabase(_DatabaseBase):
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
    connect_timeout: Duration = timedelta(seconds=10)
    lock_wait_timeout: Duration = timedelta(seconds=30)
    exact_count_limit: int = Field(default=1_000_000, ge=0)
    validation_queries: tuple[str, ...] = ()

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
    port: int = Field(default=5432, ge=1, le=65535)


class MysqlDatabase(_ServerDatabase):
    """A MySQL or MariaDB database, dumped with ``--single-transaction`` (InnoDB tables are consistent)."""

    engine: Literal["mysql"]
    port: int = Field(default=3306, ge=1, le=65535)


ServerDatabase = PostgresDatabase | MysqlDatabase
AnyDatabase = SqliteDatabase | FilesDatabase | PostgresDatabase | MysqlDatabase
Database = Annotated[AnyDatabase, Field(discriminator="engine")]


class Config(_Model):
    """The whole of backstop.yaml."""

    bucket: str
    prefix: str = "backups"
    kms_key_id: str | None = None
    alerts_topic_arn: str | None = None
    work_dir: Path | None = None
    upload: Upload = Upload()
    databases: tuple[Database, ...]

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        if not _BUCKET.fullmatch(value) or ".." in value or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
            raise ValueError(f"{value!r} is not a valid S3 bucket name")
        return value

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
        dotted += f"[{part}]" if isinstance(part, int) else (f".{part}" if dotted else str(part))
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
