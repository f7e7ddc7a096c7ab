"""The client-command scanner agrees with the real mariadb client about what it would run itself.

Each sample is fed to the real client *without* sandbox mode, with a shell command that touches a
marker file where the client might run one: the scanner must refuse exactly the samples whose
marker appears, and pass the ones whose marker does not (strings, comments, identifiers that only
look like commands), in any chunking. Real dumps made by the local dump tool pass.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.engines.mysql import ClientCommandScanner
from backstop.services.artifacts import fetch_artifact
from tests.engines.test_mysql_engine import (
    HOST,
    HOSTILE_NOTES,
    PORT,
    build_shop,
    new_database,  # noqa: F401 - the fixture
    shop_config,
)
from tests.engines.test_mysql_object_metadata import MODE, create_objects, definer  # noqa: F401 - the fixture
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("mysql")

# What a dump says first: the session's sql_mode from here on is known.
PREAMBLE = "/*!40101 SET @OLD_SQL_MODE=@@SQL_MODE, SQL_MODE='NO_AUTO_VALUE_ON_ZERO' */;\n"

RUN = {  # the client runs a command: the marker appears
    "a shell line": "\\! touch {marker}\n",
    "a system line": "system touch {marker}\n",
    "system after a statement on the same line": "SELECT 1; system touch {marker};\n",
    "system after a comment": "/* a note */ system touch {marker};\n",
    "system after a delimiter that starts a line": "SELECT 1\n;system touch {marker}\nSELECT 2;\n",
    "a shell command in an executable comment": "/*!40101 \\! touch {marker} */;\n",
    "a shell command after -- without a space": "SELECT 1 --\\! touch {marker}\n;\n",
    "a system line under another delimiter": "DELIMITER ;;\nSELECT 1;;\nsystem touch {marker}\nDELIMITER ;\n",
    "source": "source {script}\n",
    "\\.": "\\. {script}\n",
    "after a backtick identifier ending in a backslash": "SELECT 1 AS `a\\`;\n\\! touch {marker}\n",
    "after a string ending in a backslash under NO_BACKSLASH_ESCAPES": (
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES';\nSELECT 'a\\';\n\\! touch {marker}\nSELECT '';\n"
    ),
    "after an identifier ending in a backslash under ANSI_QUOTES": (
        "SET sql_mode = 'ANSI_QUOTES';\nSELECT 1 AS \"a\\\";\n\\! touch {marker}\nSELECT 1;\n"
    ),
    "under a mode restored from a variable": (
        "SET @saved = 'NO_BACKSLASH_ESCAPES';\nSET sql_mode = @saved;\nSELECT 'a\\';\n\\! touch {marker}\nSELECT '';\n"
    ),
    "under a mode whose saved variable a query changed": (
        "SET @saved = @@sql_mode;\nSELECT @saved := 'NO_BACKSLASH_ESCAPES';\nSET sql_mode = @saved;\n"
        "SELECT 'a\\';\n\\! touch {marker}\nSELECT '';\n"
    ),
    "under a mode set in a way the scanner does not follow": (
        "SET sql_mode = CONCAT('NO_BACKSLASH', '_ESCAPES');\nSELECT 'a\\';\n\\! touch {marker}\nSELECT '';\n"
    ),
}

NOT_RUN = {  # the client runs nothing: the marker never appears
    "in a string": "SELECT '\\! touch {marker}';\n",
    "in a string after an escaped quote and a newline": "SELECT 'it\\'s\n\\! touch {marker}';\n",
    "in a string after an escaped backslash": "SELECT 'a\\\\', '\\! touch {marker}';\n",
    "in a double-quoted string": 'SELECT "x\\"\n\\! touch {marker}";\n',
    "in a -- comment": "-- \\! touch {marker}\nSELECT 1;\n",
    "in a -- comment without a space at a statement's start": "--\\! touch {marker}\nSELECT 1;\n",
    "in a # comment": "SELECT 1; # \\! touch {marker}\n",
    "in a /* */ comment": "/* \\! touch {marker}\n*/ SELECT 1;\n",
    "in a routine under another delimiter": (
        "DELIMITER ;;\nCREATE PROCEDURE p_marker() BEGIN SELECT '\\! touch {marker}'; SELECT 2; END;;\nDELIMITER ;\n"
    ),
    "NULL written \\N": "SELECT \\N;\n",
    "command names as identifiers": "SELECT 1 AS system, 2 AS `use`, 3 AS source;\n",
    "after a string ending in a backslash under NO_BACKSLASH_ESCAPES": (
        "SET sql_mode = 'NO_BACKSLASH_ESCAPES';\nSELECT 'a\\', '\\! touch {marker}';\n"
    ),
    "after an identifier ending in a backslash under ANSI_QUOTES": (
        "SET sql_mode = 'ANSI_QUOTES';\nSELECT 1 AS \"a\\\", '\\! touch {marker}';\n"
    ),
    "under a mode restored from its saved variable": (
        "SET @saved = @@sql_mode;\nSET sql_mode = 'NO_BACKSLASH_ESCAPES';\nSET sql_mode = @saved;\n"
        "SELECT 'b\\'', '\\! touch {marker}';\n"
    ),
    "after a SET the scanner does not follow but that leaves sql_mode alone": (
        "SET @x = CONCAT('a', 'b');\nSELECT 'it\\'s', '\\! touch {marker}';\n"
    ),
    "mariadb-dump's sandbox line": "/*M!999999\\- enable the sandbox mode */ \nSELECT '\\! touch {marker}';\n",
}

OTHER_COMMANDS = {  # refused though they leave no marker here: another database or host, a client file, output
    "tee": "tee /tmp/x\nSELECT 1;\n",  # the client ignores tee and pager in batch mode, but not everywhere
    "\\T": "\\T /tmp/x\nSELECT 1;\n",
    "use": "use mysql\n",
    "\\u": "\\u mysql\n",
    "use as a statement": "SELECT 1;\nuse mysql;\n",
    "USE in an executable comment": "/*!40101 USE mysql */;\n",
    "connect": "connect mysql 127.0.0.1\n",
    "\\r": "\\r mysql 127.0.0.1\n",
    "charset": "charset sjis\n",
    "pager": "pager sh -c 'touch x'\n",
    "prompt": "\\R x\n",
    "warnings": "\\W\n",
    "LOAD DATA LOCAL": "LOAD DATA LOCAL INFILE '/etc/passwd' INTO TABLE t;\n",
    "quit": "quit\n",
    "a NUL byte": "SELECT 1;\0\n",
    "a DELIMITER with a backslash": "DELIMITER \\\\\n",
}


def scan(data: bytes, chunk: int) -> str | None:
    scanner = ClientCommandScanner()
    for start in range(0, len(data), chunk):
        scanner.feed(data[start : start + chunk])
    scanner.finish()
    return scanner.problem


def verdicts(data: bytes) -> set[str | None]:
    """The scanner's verdict in every chunking, down to a byte at a time."""
    return {scan(data, chunk) for chunk in (1, 2, 3, 5, 7, 64, 1 << 20)}


def sample(text: str, tmp_path: Path) -> tuple[bytes, Path]:
    marker, script = tmp_path / "marker", tmp_path / "script.sql"
    script.write_text(f"\\! touch {marker}\n")
    return (PREAMBLE + text.format(marker=marker, script=script)).encode(), marker


def run_client(data: bytes, dbname: str) -> None:
    """The real client as a restore ran it before sandbox mode: batch, stopping at the first error."""
    subprocess.run(
        ["mariadb", f"--host={HOST}", f"--port={PORT}", "--user=root", "--protocol=TCP", "--batch", dbname],
        input=data,
        capture_output=True,
        check=False,
        timeout=60,
    )


@pytest.mark.parametrize("name", sorted(RUN))
def test_what_the_client_runs_itself_is_refused(
    name: str,
    tmp_path: Path,
    new_database: Callable[[], str],  # noqa: F811
) -> None:
    # given a sample whose command the real client runs: its marker appears
    data, marker = sample(RUN[name], tmp_path)
    run_client(data, new_database())
    assert marker.exists(), "the sample must be one the client runs"

    # when it is scanned, in any chunking, then it is refused, naming the line
    (problem,) = verdicts(data)
    assert problem is not None and problem.startswith("line ")


@pytest.mark.parametrize("name", sorted(NOT_RUN))
def test_what_only_looks_like_a_command_passes(
    name: str,
    tmp_path: Path,
    new_database: Callable[[], str],  # noqa: F811
) -> None:
    # given a sample whose command-like text the real client never runs
    data, marker = sample(NOT_RUN[name], tmp_path)
    run_client(data, new_database())
    assert not marker.exists(), "the sample must be one the client does not run"

    # when it is scanned, in any chunking, then it passes
    assert verdicts(data) == {None}


@pytest.mark.parametrize("name", sorted(OTHER_COMMANDS))
def test_other_client_commands_and_statements_outside_a_dump_are_refused(name: str) -> None:
    data = (PREAMBLE + OTHER_COMMANDS[name]).encode()
    found = verdicts(data)
    assert len(found) == 1 and None not in found, found


def test_a_backslash_in_a_string_before_the_sql_mode_is_known_is_refused() -> None:
    # given a string with a backslash before any SET sql_mode: the server's default mode decides how it reads
    data = b"SELECT 'a\\'', 1;\n"

    # when it is scanned, then it is refused for that reason
    assert verdicts(data) == {"line 1 holds a backslash in a string where the session's sql_mode is not known"}


def test_the_refusal_names_the_line_and_the_command() -> None:
    data = (PREAMBLE + "SELECT 1;\n\n  SYSTEM touch /tmp/x\n").encode()
    assert scan(data, 1 << 20) == (
        "line 4 holds the client command `system`, which the client would run itself on the restoring host"
    )


def test_real_dumps_pass_in_any_chunking(
    new_database: Callable[[], str],  # noqa: F811
    definer: str,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
    tmp_path: Path,
) -> None:
    # given a dump made by the real dump tool of a database with hostile strings, binary data, views,
    # triggers, routines and events created under ANSI_QUOTES, NO_BACKSLASH_ESCAPES and latin1
    source = new_database()
    build_shop(source, orders=300)
    create_objects(source, definer, "utf8mb3", MODE, "src")
    create_objects(source, definer, "latin1", "ANSI_QUOTES", "lat")
    manifest = run_backup(shop_config(make_config, source), store, at(21), database="shop").manifest
    raw = tmp_path / "dump.sql"
    fetch_artifact(store, manifest, raw)
    data = raw.read_bytes()
    assert b"NO_BACKSLASH_ESCAPES" in data and b"DELIMITER ;;" in data and HOSTILE_NOTES[0].encode() in data

    # when it is scanned, in any chunking, then nothing is found
    assert verdicts(data) == {None}
