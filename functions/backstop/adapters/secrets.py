"""Database passwords: where they come from, and the 0600 files through which the dump tools get them.

A password never appears in argv, an environment value, a log line, an exception or an alert.
It is read from Secrets Manager (by ARN, in AWS) or from the environment variable the config
names (locally), written to a file readable only by this user inside the run directory, handed to
the tool by the file's path (``PGPASSFILE``, ``--defaults-extra-file``), and removed afterwards.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from backstop.config import MysqlDatabase, PostgresDatabase, ServerDatabase
from backstop.errors import ConfigError, SourceError


def resolve_password(db: ServerDatabase) -> str | None:
    """The password of ``db``, or None when the server must not ask for one (trust, peer, option files)."""
    if db.password_env is not None:
        value = os.environ.get(db.password_env)
        if value is None:
            raise ConfigError(f"Database {db.name} takes its password from ${db.password_env}, which is not set.")
        return value
    if db.password_secret is not None:
        return _secret_password(db)
    return None


def _secret_password(db: ServerDatabase) -> str:
    from aws_lambda_powertools.utilities import parameters  # imported lazily: only deployed functions need it

    try:
        raw = parameters.get_secret(db.password_secret or "", max_age=300)
    except parameters.exceptions.GetParameterError:
        # The library's message can quote the service's answer; ours names only the database.
        raise SourceError(
            f"The password secret of database {db.name} cannot be read (check the ARN and the function's "
            "secretsmanager:GetSecretValue permission)."
        ) from None
    text = raw if isinstance(raw, str) else raw.decode()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return text
    if isinstance(document, dict) and isinstance(document.get("password"), str):
        return str(document["password"])
    if isinstance(document, str):
        return document
    raise SourceError(f"The password secret of database {db.name} is JSON without a 'password' field.")


@contextmanager
def private_file(run_dir: Path, name: str, content: str) -> Iterator[Path]:
    """A file only this user can read, created exclusively (never through a planted link), then removed."""
    path = run_dir / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        yield path
    finally:
        path.unlink(missing_ok=True)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def pgpass_line(db: PostgresDatabase, password: str) -> str:
    """One ``.pgpass`` line for ``db`` (``host:port:dbname:user:password``, with ``:`` and ``\\`` escaped)."""
    fields = [db.host, str(db.port), "*", db.user, password]
    return ":".join(_pgpass_field(field) for field in fields) + "\n"


def mysql_option_file(db: MysqlDatabase, password: str) -> str:
    """A ``[client]`` option file giving the password (quoted, with ``\\`` and ``"`` escaped)."""
    quoted = password.replace("\\", "\\\\").replace('"', '\\"')
    return f'[client]\npassword="{quoted}"\n'
