"""`backstop --version`: the package and every database client tool it would run, with the version each reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from backstop.cli import main


def fake_tool(directory: Path, name: str, says: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n[ \"$1\" = --version ] && echo '{says}'\n")
    path.chmod(0o755)


def test_version_names_each_client_tool_with_what_it_reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a PATH with PostgreSQL 18's tools, and MySQL's dump tool where MariaDB's is missing
    fake_tool(tmp_path, "pg_dump", "pg_dump (PostgreSQL) 18.1")
    fake_tool(tmp_path, "pg_restore", "pg_restore (PostgreSQL) 18.1")
    fake_tool(tmp_path, "psql", "psql (PostgreSQL) 18.1")
    fake_tool(tmp_path, "mysqldump", "mysqldump  Ver 8.4.3 for Linux on x86_64")
    fake_tool(tmp_path, "mariadb", "mariadb from 11.8.3-MariaDB, client 15.2")
    monkeypatch.setenv("PATH", str(tmp_path))

    # when
    result = CliRunner().invoke(main, ["--version"])

    # then each tool is named as the engines would find it, with its own words
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("backstop 0.1.0 (Python 3.")
    assert result.output.splitlines()[1:] == [
        "pg_dump: pg_dump (PostgreSQL) 18.1",
        "pg_restore: pg_restore (PostgreSQL) 18.1",
        "psql: psql (PostgreSQL) 18.1",
        "mysqldump: mysqldump Ver 8.4.3 for Linux on x86_64",
        "mariadb: mariadb from 11.8.3-MariaDB, client 15.2",
    ]


def test_version_says_which_tools_are_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a PATH with no database client at all
    monkeypatch.setenv("PATH", str(tmp_path))

    # when
    result = CliRunner().invoke(main, ["--version"])

    # then the version is still shown, and each tool the engines need is named as absent
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[1:] == [
        "pg_dump: not on PATH",
        "pg_restore: not on PATH",
        "psql: not on PATH",
        "mariadb-dump: not on PATH",
        "mariadb: not on PATH",
    ]


def test_a_tool_that_prints_nothing_is_reported_as_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a pg_dump that prints no version
    (tmp_path / "pg_dump").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "pg_dump").chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    # when
    result = CliRunner().invoke(main, ["--version"])

    # then
    assert "pg_dump: unknown" in result.output.splitlines()
