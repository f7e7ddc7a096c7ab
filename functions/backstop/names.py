"""Allow-lists for every name that ends up in an S3 key, a path or a message.

Checked before any AWS call: a name that does not match is refused, never cleaned up.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from backstop.errors import InvalidNameError

DATABASE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
TARGET_NAME = DATABASE_NAME
_STAMP = "%Y%m%dT%H%M%SZ"
_BACKUP_ID = re.compile(r"(?P<db>[a-z0-9][a-z0-9_-]{0,62})-(?P<stamp>\d{8}T\d{6}Z)")


def _shown(value: str) -> str:
    """A bounded, printable rendering of a rejected value (it may be 1 KB or hold control bytes)."""
    text = value if len(value) <= 40 else value[:40] + "..."
    return repr(text)


def check_database_name(name: str) -> str:
    """Return ``name`` if it is a valid database name, else raise InvalidNameError."""
    if not DATABASE_NAME.fullmatch(name):
        raise InvalidNameError(
            f"Invalid database name {_shown(name)}: use 1-63 characters of a-z, 0-9, '_' and '-', "
            "starting with a letter or digit."
        )
    return name


def check_target_name(name: str) -> str:
    """Return ``name`` if it is a valid restore target name, else raise InvalidNameError."""
    if not TARGET_NAME.fullmatch(name):
        raise InvalidNameError(f"Invalid target name {_shown(name)}: use 1-63 characters of a-z, 0-9, '_' and '-'.")
    return name


def backup_id_for(database: str, at: datetime) -> str:
    """The deterministic backup id of ``database`` at ``at`` (UTC, whole seconds)."""
    check_database_name(database)
    return f"{database}-{at.astimezone(UTC).strftime(_STAMP)}"


def parse_backup_id(backup_id: str, database: str | None = None) -> tuple[str, datetime]:
    """Split a backup id into (database, time); refuse anything not produced by ``backup_id_for``."""
    match = _BACKUP_ID.fullmatch(backup_id)
    if match is None:
        raise InvalidNameError(
            f"Invalid backup id {_shown(backup_id)}: expected <database>-YYYYMMDDTHHMMSSZ, "
            "as printed by `backstop list`."
        )
    if database is not None and match["db"] != database:
        raise InvalidNameError(f"Backup id {_shown(backup_id)} does not belong to database {database!r}.")
    try:
        at = datetime.strptime(match["stamp"], _STAMP).replace(tzinfo=UTC)
    except ValueError:
        raise InvalidNameError(f"Invalid backup id {_shown(backup_id)}: the timestamp is not a real time.") from None
    return match["db"], at


POSTGRES_IDENTIFIER_BYTES = 63
MYSQL_IDENTIFIER_CHARS = 64


def postgres_derived_name(dbname: str, suffix: str) -> str:
    """``<dbname><suffix>`` cut to PostgreSQL's 63-byte identifier limit (the suffix is always kept whole)."""
    room = POSTGRES_IDENTIFIER_BYTES - len(suffix.encode())
    return dbname.encode()[:room].decode(errors="ignore") + suffix


def mysql_derived_name(dbname: str, suffix: str) -> str:
    """``<dbname><suffix>`` cut to MySQL's 64-character identifier limit (the suffix is always kept whole)."""
    return dbname[: MYSQL_IDENTIFIER_CHARS - len(suffix)] + suffix
