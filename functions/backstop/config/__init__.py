"""Typed models of backstop.yaml, validated once.

Every problem is reported with its path in the file and its line (``backstop.yaml:7: databases[0].name: ...``).
infra/ imports these models to build the stack; nothing here imports the CDK.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from backstop.config.databases import (
    DEPLOYMENT_FIELDS,
    LOOPBACK_NAMES,
    AnyDatabase,
    Database,
    DrillServer,
    Efs,
    FileDrill,
    FilesDatabase,
    MysqlDatabase,
    PostgresDatabase,
    ServerDatabase,
    ServerDrill,
    SqliteDatabase,
    TlsMode,
    Vpc,
    is_loopback,
    tls_mode_of,
)
from backstop.config.fields import (
    _PREFIX,
    CONFIG_ENV,
    DEFAULT_CONFIG,
    LARGEST_BUDGET,
    LONGEST_DURATION,
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
    Upload,
    VpcId,
    WholeNumber,
    _LocatedError,
    _Model,
    _shown,
    format_duration,
    parse_duration,
)
from backstop.config.targets import name_clash, resolve_target
from backstop.config.vault import (
    APPROVER_PATTERN,
    Alerts,
    FreshnessCheck,
    KeepPreRestore,
    ObjectLock,
    Replica,
    RestoreSettings,
    Runner,
    Storage,
    Sweep,
    _bucket,
)
from backstop.errors import ConfigError, UnknownDatabaseError


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
    def _targets_are_valid(self) -> Config:
        """Each declared restore target resolves against its database (``config.targets``)."""
        for index, db in enumerate(self.databases):
            for name, overrides in db.restore_targets.items():
                try:
                    resolve_target(db, name, overrides)
                except ConfigError as exc:
                    raise _LocatedError(("databases", index, "restore_targets", name), str(exc).rstrip(".")) from None
        return self

    @model_validator(mode="after")
    def _derived_names_apart(self) -> Config:
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


__all__ = [
    "APPROVER_PATTERN",
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "DEPLOYMENT_FIELDS",
    "LARGEST_BUDGET",
    "LONGEST_DURATION",
    "LOOPBACK_NAMES",
    "AbsolutePath",
    "Alerts",
    "AnyDatabase",
    "Config",
    "Database",
    "DatabaseName",
    "DrillServer",
    "Duration",
    "Efs",
    "FileDrill",
    "FilesDatabase",
    "Flag",
    "FreshnessCheck",
    "FunctionLimits",
    "KeepPreRestore",
    "MysqlDatabase",
    "ObjectLock",
    "PostgresDatabase",
    "Replica",
    "RestoreSettings",
    "Retention",
    "RouteTableId",
    "Runner",
    "SecurityGroupId",
    "ServerDatabase",
    "ServerDrill",
    "SqliteDatabase",
    "Storage",
    "SubnetId",
    "Sweep",
    "TimeZone",
    "TlsMode",
    "Upload",
    "Vpc",
    "VpcId",
    "WholeNumber",
    "format_duration",
    "is_loopback",
    "load_config",
    "parse_config",
    "parse_duration",
    "resolve_config_path",
    "tls_mode_of",
]
