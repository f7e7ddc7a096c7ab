"""Passwords reach the dump tools through 0600 files, and never through the config or a message."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from backstop.adapters.secrets import mysql_option_file, pgpass_line, private_file, resolve_password
from backstop.config import MysqlDatabase, PostgresDatabase, parse_config
from backstop.errors import ConfigError

SENTINEL = 's3ntinel:pa\\ss"word'


def postgres(**extra: object) -> PostgresDatabase:
    return PostgresDatabase.model_validate(
        {"name": "app", "engine": "postgres", "host": "127.0.0.1", "dbname": "app", "user": "backup", **extra}
    )


def test_a_private_file_is_readable_only_by_its_owner_and_removed_afterwards(tmp_path: Path) -> None:
    with private_file(tmp_path, ".pgpass", "secret\n") as path:
        mode = stat.S_IMODE(path.stat().st_mode)
        content = path.read_text()

    assert mode == 0o600
    assert content == "secret\n"
    assert not path.exists()


def test_a_private_file_refuses_a_planted_file_or_link(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").write_text("")
    (tmp_path / ".pgpass").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(FileExistsError), private_file(tmp_path, ".pgpass", "secret"):
        pass

    assert (tmp_path / "elsewhere").read_text() == ""


def test_pgpass_escapes_colons_and_backslashes() -> None:
    line = pgpass_line(postgres(port=6543), "a:b\\c")

    assert line == "127.0.0.1:6543:*:backup:a\\:b\\\\c\n"


def test_mysql_option_file_quotes_the_password() -> None:
    db = MysqlDatabase.model_validate(
        {"name": "shop", "engine": "mysql", "host": "db", "dbname": "shop", "user": "root"}
    )

    assert mysql_option_file(db, 'p"w\\d') == '[client]\npassword="p\\"w\\\\d"\n'


def test_password_comes_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DB_PASSWORD", SENTINEL)

    assert resolve_password(postgres(password_env="APP_DB_PASSWORD")) == SENTINEL
    assert resolve_password(postgres()) is None


def test_a_missing_password_variable_is_named_but_no_value_is_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_DB_PASSWORD", raising=False)

    with pytest.raises(ConfigError, match=r"\$APP_DB_PASSWORD, which is not set"):
        resolve_password(postgres(password_env="APP_DB_PASSWORD"))


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("password_secret", "hunter2", "must be a Secrets Manager secret ARN"),
        ("host", "db;rm -rf /", "is not a host name"),
        ("dbname", "app; DROP DATABASE x", "is not a plain database or user name"),
        ("password_env", "APP DB", "is not an environment variable name"),
    ],
)
def test_server_database_fields_are_validated(field: str, value: str, problem: str) -> None:
    text = (
        "bucket: backstop-test\ndatabases:\n  - name: app\n    engine: postgres\n    host: db\n"
        f"    dbname: app\n    user: backup\n    {field}: {value!r}\n"
    )

    with pytest.raises(ConfigError, match=problem) as caught:
        parse_config(text)

    # a password pasted where an ARN belongs is refused without being echoed back
    assert field != "password_secret" or value not in str(caught.value)


def test_a_password_secret_and_a_password_variable_are_exclusive() -> None:
    with pytest.raises(ConfigError, match="not both"):
        parse_config(
            "bucket: backstop-test\ndatabases:\n  - name: app\n    engine: mysql\n    host: db\n    dbname: app\n"
            "    user: root\n    password_env: X\n"
            "    password_secret: arn:aws:secretsmanager:us-east-1:123456789012:secret:app-AbCdEf\n"
        )
