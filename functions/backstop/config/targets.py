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
from collections.abc import Sequence
from pathlib import PurePath, PurePosixPath
from typing import Any

from pydantic import ValidationError

from backstop.config.databases import AnyDatabase, MysqlDatabase, PostgresDatabase, ServerDatabase, tls_mode_of
from backstop.errors import ConfigError, RestoreError
from backstop.names import check_database_name, mysql_derived_name, postgres_derived_name

TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
IN_PLACE = "in-place"
_LOCAL_FIELDS = frozenset({"path"})
_SERVER_FIELDS = frozenset({"host", "port", "dbname", "user", "password_secret", "password_env", "tls", "tls_ca"})

SYSTEM_TREES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/run",
)
"""Never a restore target, nor anything inside them: the operating system's own files."""
TOP_LEVEL_DIRECTORIES = (
    "/",
    "/home",
    "/media",
    "/mnt",
    "/opt",
    "/root",
    "/srv",
    "/tmp",  # noqa: S108 - refused as a target, not used as a temporary directory
    "/var",
    "/var/lib",
    "/var/log",
    "/var/tmp",  # noqa: S108 - refused as a target, not used as a temporary directory
)
"""Never a restore target themselves (a restore swaps its target away whole); a place inside one is fine."""
RESERVED_DATABASES = {
    "postgres": frozenset({"postgres", "template0", "template1"}),
    "mysql": frozenset({"mysql", "information_schema", "performance_schema", "sys"}),
}
"""A server's own databases, never a restore target."""
KEPT_SUFFIX = "_pre_restore_"
STAMP_SHAPE = "20260101t020000z"
"""The shape of the stamp in the databases a server restore derives (``<dbname>_pre_restore_<stamp>``)."""


def target_fields(db: AnyDatabase) -> frozenset[str]:
    return _SERVER_FIELDS if isinstance(db, PostgresDatabase | MysqlDatabase) else _LOCAL_FIELDS


def resolve_target(db: AnyDatabase, name: str, overrides: dict[str, Any]) -> AnyDatabase:
    """The database configuration a restore into target ``name`` writes to.

    ConfigError if the target is bad: its name, a field a target may not set, an invalid value, or
    a target other than in-place that is the source itself.
    """
    if not TARGET_NAME.fullmatch(name):
        raise ConfigError(f"Restore target name {name[:40]!r} of {db.name} must match [a-z0-9][a-z0-9_-]{{0,31}}.")
    unknown = sorted(set(overrides) - target_fields(db))
    if unknown:
        raise ConfigError(
            f"Restore target {name} of {db.name} sets {', '.join(_key(k) for k in unknown)}; a {db.engine} target "
            "may set only "
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
    _inherit_tls(data, db, overrides)
    try:
        target = type(db).model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        problem = str(first["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"Restore target {name} of {db.name}: {f'{where}: ' if where else ''}{problem}.") from None
    if name != IN_PLACE and _location(target) == _location(db):
        raise ConfigError(f"Restore target {name} of {db.name} is the source itself; call it in-place.")
    if isinstance(target, PostgresDatabase | MysqlDatabase):
        if target.dbname.lower() in RESERVED_DATABASES[target.engine]:
            raise ConfigError(
                f"Restore target {name} of {db.name} is {target.dbname}, the server's own database: "
                "restore into a database of its own."
            )
        return target
    system = system_directory(target.path)
    if system is not None:
        inside = "" if _plain(target.path) == system else f"inside {system}, "
        raise ConfigError(
            f"Restore target {name} of {db.name} is {target.path}, {inside}a system directory: restore into a "
            "place of its own (docs/deploy.md lists the directories refused)."
        )
    source, place = PurePosixPath(_plain(_location(db)[0])), PurePosixPath(_plain(target.path))
    if name != IN_PLACE and (source.is_relative_to(place) or place.is_relative_to(source)):
        raise ConfigError(
            f"Restore target {name} of {db.name} ({target.path}) overlaps the source ({source}): a restore "
            "swaps its target away whole, so restore beside the source, never inside or around it."
        )
    return target


def _inherit_tls(data: dict[str, Any], db: AnyDatabase, overrides: dict[str, Any]) -> None:
    """A server target keeps the source's TLS settings, but for the fields it sets itself, as ``tls_moved_to`` says."""
    if not isinstance(db, PostgresDatabase | MysqlDatabase):
        return
    host = overrides.get("host", db.host)
    if not isinstance(host, str):
        return  # the model refuses it
    moved = tls_moved_to(db, host)
    if "tls" not in overrides:
        data["tls"] = moved["tls"]
    if "tls_ca" not in overrides and tls_mode_of(host, data.get("tls")) != "verify-full":
        data.pop("tls_ca", None)


def tls_moved_to(db: ServerDatabase, host: str) -> dict[str, Any]:
    """``db``'s ``tls`` and ``tls_ca`` for a connection to ``host`` instead (a restore target, a restore URL).

    Kept, except what would not fit the other host unless written for it: ``tls: off`` (off is never a
    default away from loopback, so the other host gets its own default), and ``tls_ca`` where the TLS
    there does not verify.
    """
    tls = None if db.tls == "off" and host.lower() != db.host.lower() else db.tls
    return {"tls": tls, "tls_ca": db.tls_ca if tls_mode_of(host, tls) == "verify-full" else None}


def _key(key: object) -> str:
    """An unknown key as a message shows it: plain, or quoted and bounded (it may hold a newline)."""
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_-]{1,40}", text) else repr(text[:40])


def _plain(path: PurePath | str) -> str:
    """``path`` with one leading slash (POSIX keeps ``//etc`` apart from ``/etc``; the kernel does not)."""
    text = str(path)
    return "/" + text.lstrip("/") if text.startswith("/") else text


def system_directory(path: PurePath | str) -> str | None:
    """The system directory ``path`` is, or lies inside (``SYSTEM_TREES``, ``TOP_LEVEL_DIRECTORIES``); else None.

    Lexical: symbolic links are not followed (the configuration is checked where it is written,
    not only where it runs).
    """
    plain = PurePosixPath(_plain(path))
    for tree in SYSTEM_TREES:
        if plain.is_relative_to(tree):
            return tree
    return str(plain) if str(plain) in TOP_LEVEL_DIRECTORIES else None


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


def name_clash(databases: Sequence[AnyDatabase]) -> tuple[tuple[str | int, ...], str] | None:
    """The first place where names that restores derive would clash, as (its path in the file, the sentence).

    - a safety snapshot's pseudo-database (``safety_database``) that is another database's name, or
      the same as another target's once cut to 63 characters: they would share a vault prefix, its
      lifecycle rule and ``latest``;
    - two targets on one server whose fresh and pre-restore databases (``<dbname>_pre_restore_<time>``,
      cut to the engine's identifier limit) would be named alike: one restore would take the other
      for a restore under way, and pruning would count the other's copies as its own.
    """
    owner = {db.name: index for index, db in enumerate(databases)}
    safety: dict[str, tuple[int, str]] = {}
    for index, db in enumerate(databases):
        for target in db.restore_targets:
            name = safety_database(db.name, target)
            named = owner.get(name)
            if named is not None and named >= index:
                return (
                    ("databases", named, "name"),
                    f"{name!r} is where restores of {db.name} into {target} keep their safety snapshots "
                    f"(databases[{index}].restore_targets.{target}): rename this database",
                )
            if named is not None:
                return (
                    ("databases", index, "restore_targets", target),
                    f"restores into {target} would keep their safety snapshots as {name!r}, which is already the "
                    f"name of databases[{named}]: rename that database or this target",
                )
            if name in safety:
                first, other = safety[name]
                return (
                    ("databases", index, "restore_targets", target),
                    f"its safety snapshots would be kept as {name!r}, the same safety-snapshot name as "
                    f"databases[{first}].restore_targets.{other} (names are cut to 63 characters): shorten a "
                    "database name or rename a target",
                )
            safety[name] = (index, target)
    return _server_clash(databases)


def _server_clash(databases: Sequence[AnyDatabase]) -> tuple[tuple[str | int, ...], str] | None:
    seen: dict[tuple[str, str, int, str], tuple[int, str, str]] = {}
    for index, db in enumerate(databases):
        if not isinstance(db, PostgresDatabase | MysqlDatabase):
            continue
        for target, overrides in db.restore_targets.items():
            place = resolve_target(db, target, overrides)
            assert isinstance(place, PostgresDatabase | MysqlDatabase)
            prefix = kept_prefix(place)
            key = (place.engine, place.host.lower(), place.port, prefix)
            first = seen.setdefault(key, (index, target, place.dbname))
            if first[2] != place.dbname:
                field: tuple[str, ...] = ("dbname",) if "dbname" in overrides else ()
                return (
                    ("databases", index, "restore_targets", target, *field),
                    f"restores into {place.dbname} and {first[2]} (databases[{first[0]}].restore_targets."
                    f"{first[1]}) on {place.host}:{place.port} derive the same database names "
                    f"({prefix}<time>): make the names differ in their first {len(prefix) - len(KEPT_SUFFIX)} "
                    "characters",
                )
    return None


def kept_prefix(db: ServerDatabase, suffix: str = KEPT_SUFFIX) -> str:
    """How the names of the pre-restore databases a restore into ``db`` keeps begin: ``<dbname>_pre_restore_``
    (``suffix="_restore_"``: its fresh databases, ``<dbname>_restore_``).

    ``dbname`` is cut as the engine cuts it to fit its identifier limit (so it may be shorter).
    """
    return derived_name(db, db.dbname, suffix + STAMP_SHAPE)[: -len(STAMP_SHAPE)]


def derived_name(db: ServerDatabase, dbname: str, suffix: str) -> str:
    """``<dbname><suffix>`` within the identifier limit of ``db``'s engine (the suffix is always kept whole)."""
    if isinstance(db, MysqlDatabase):
        return mysql_derived_name(dbname, suffix)
    return postgres_derived_name(dbname, suffix)
