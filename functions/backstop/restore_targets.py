"""Restore targets: where the restore workflow may write, declared per database in backstop.yaml.

```yaml
    restore_targets:
      staging: {path: /mnt/staging/orders.db}              # sqlite, files
      in-place: {}                                         # the database's own source, opted into
      reporting: {host: replica.internal, dbname: app_reporting, password_secret: arn:...}  # servers
```

A target is the database's own configuration with these fields replaced, validated by the same
model, so it is checked exactly like a source. Nothing else is ever restored into: an execution
input naming an undeclared target is refused.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from backstop.config import AnyDatabase, MysqlDatabase, PostgresDatabase
from backstop.errors import ConfigError, RestoreError
from backstop.names import check_database_name

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
IN_PLACE = "in-place"
_LOCAL_FIELDS = frozenset({"path"})
_SERVER_FIELDS = frozenset({"host", "port", "dbname", "user", "password_secret", "password_env"})


def target_fields(db: AnyDatabase) -> frozenset[str]:
    return _SERVER_FIELDS if isinstance(db, PostgresDatabase | MysqlDatabase) else _LOCAL_FIELDS


def resolve_target(db: AnyDatabase, name: str, overrides: dict[str, Any]) -> AnyDatabase:
    """The database configuration a restore into target ``name`` writes to.

    ConfigError if the target is bad: its name, a field a target may not set, an invalid value, or
    a target other than in-place that is the source itself.
    """
    if not TARGET_NAME.fullmatch(name):
        raise ConfigError(f"Restore target name {name!r} of {db.name} must match [a-z0-9][a-z0-9_-]{{0,31}}.")
    unknown = sorted(set(overrides) - target_fields(db))
    if unknown:
        raise ConfigError(
            f"Restore target {name} of {db.name} sets {', '.join(unknown)}; a {db.engine} target may set only "
            f"{', '.join(sorted(target_fields(db)))}."
        )
    if name == IN_PLACE and overrides:
        raise ConfigError(f"Restore target in-place of {db.name} is the source itself and takes no fields.")
    if name != IN_PLACE and not overrides:
        raise ConfigError(f"Restore target {name} of {db.name} names no location; use in-place for the source.")
    data = db.model_dump(mode="python", exclude={"restore_targets", "drill"})  # a target is only a place
    data.update(overrides)
    if "password_secret" in overrides:
        data.pop("password_env", None)
    if "password_env" in overrides:
        data.pop("password_secret", None)
    try:
        target = type(db).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"Restore target {name} of {db.name}: {f'{where}: ' if where else ''}{problem}.") from None
    if name != IN_PLACE and _location(target) == _location(db):
        raise ConfigError(f"Restore target {name} of {db.name} is the source itself; call it in-place.")
    return target


def _location(db: AnyDatabase) -> tuple[Any, ...]:
    if isinstance(db, PostgresDatabase | MysqlDatabase):
        return (db.host, db.port, db.dbname)
    return (str(db.path),)


def target_for(db: AnyDatabase, name: str) -> AnyDatabase:
    """The declared target ``name`` of ``db``; RestoreError naming the declared ones otherwise."""
    if name not in db.restore_targets:
        declared = ", ".join(sorted(db.restore_targets)) or "none"
        raise RestoreError(f"{name!r} is not a restore target of {db.name} (declared: {declared}).")
    return resolve_target(db, name, db.restore_targets[name])


def safety_database(database: str, target: str) -> str:
    """The pseudo-database under which the safety snapshots of ``database``'s ``target`` are stored.

    Its own prefix in the vault: never the database's latest, and expired by its own lifecycle rule.
    """
    suffix = f"-pre-restore-{target}"
    return check_database_name(database[: 63 - len(suffix)] + suffix)
