"""A MySQL dump that would make the restoring host run commands is refused, and the client could not run them anyway.

The attacker here can write a consistent artifact and manifest into the bucket (``replace_artifact``):
the restore must refuse a dump holding client commands before any database is touched, and the
client that loads dumps must refuse them by itself (sandbox mode, binary mode, no LOCAL INFILE).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

from backstop.adapters.s3_store import S3Store
from backstop.config import MysqlDatabase
from backstop.errors import RestoreError, UnsafeArchiveError
from backstop.manifest import Manifest
from backstop.services.artifacts import fetch_artifact
from backstop.services.server_restore import ServerRestoreService
from backstop.services.verify import VerifyService
from tests.engines.test_mysql_engine import (
    build_shop,
    new_database,  # noqa: F401 - the fixture
    query,
)
from tests.engines.test_mysql_restore import (
    NAME,
    databases_like,
    drop_derived,
    entry,
    everything,
    old_application,
    url,
    yes,
)
from tests.services import at, leftovers, replace_artifact, run_backup

pytestmark = pytest.mark.xdist_group("mysql")

INJECTED = {
    "a shell line": "\\! touch {marker}\n",
    "a system line": "system touch {marker}\n",
    "a shell command in an executable comment": "/*!40101 \\! touch {marker} */;\n",
    "a shell command behind NO_BACKSLASH_ESCAPES": (
        "/*!40101 SET sql_mode = 'NO_BACKSLASH_ESCAPES' */;\nSELECT 'a\\';\n\\! touch {marker}\nSELECT '';\n"
        "/*!40101 SET sql_mode = 'NO_AUTO_VALUE_ON_ZERO' */;\n"
    ),
}


@pytest.fixture
def marker() -> Iterator[Path]:
    """A file in /tmp no test creates: a command run on this host would."""
    path = Path(f"/tmp/backstop-pwned-{uuid.uuid4().hex}")
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture
def committed(
    new_database: Callable[[], str],  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
) -> tuple[Any, Manifest]:
    source = new_database()
    build_shop(source, orders=500)
    config = make_config(entry(source))
    return config, run_backup(config, store, at(21), database=NAME).manifest


@pytest.fixture
def target(new_database: Callable[[], str]) -> Iterator[str]:  # noqa: F811
    name = new_database()
    old_application(name)
    yield name
    drop_derived(name)


def inject(s3: Any, store: S3Store, manifest: Manifest, text: str, tmp_path: Path) -> Manifest:
    """Commit the real dump with ``text`` inserted after its first table's data, as a consistent backup.

    The first line newer dump tools write (``\\-``: the client's sandbox mode on) goes: an attacker drops it.
    """
    raw_path = tmp_path / "real.sql"
    fetch_artifact(store, manifest, raw_path)
    raw = raw_path.read_bytes()
    sandbox_line = b"/*M!999999\\- enable the sandbox mode */ \n"
    assert raw.startswith(sandbox_line)
    raw = raw[len(sandbox_line) :]
    at_ = raw.index(b"UNLOCK TABLES;\n") + len(b"UNLOCK TABLES;\n")
    hostile = raw[:at_] + text.encode() + raw[at_:]
    return replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(hostile), raw=hostile)


@pytest.mark.parametrize("case", sorted(INJECTED))
def test_a_dump_with_a_shell_command_is_refused_before_anything_runs(
    case: str,
    committed: tuple[Any, Manifest],
    target: str,
    marker: Path,
    s3: Any,
    store: S3Store,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    # given a committed backup whose artifact an attacker replaced by the real dump plus a shell command
    config, manifest = committed
    forged = inject(s3, store, manifest, INJECTED[case].format(marker=marker), tmp_path)
    before = everything(target)

    # when it is restored into an existing target
    with pytest.raises(UnsafeArchiveError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

    # then it is refused in one sentence naming the backup and the line, the command never ran,
    # no database was created and the target is as it was
    message = str(failure.value)
    assert message.startswith(f"Backup {forged.backup_id} is refused before anything runs: line ")
    assert message.endswith(".") and ". " not in message
    assert not marker.exists()
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []
    # and `backstop verify` refuses it the same way
    with pytest.raises(UnsafeArchiveError):
        VerifyService(config, store).verify(NAME, forged.backup_id)
    assert not marker.exists()


# What the client itself must refuse, even if the scan were bypassed: (dump text, what it would do).
UNSCANNED = {
    "a shell line": "\\! touch {marker}\n",
    "a system statement": "system touch {marker};\n",
    "source": "source {script}\n",
    "\\.": "\\. {script}\n",
    "use another database": "use {other}\nCREATE TABLE planted (id INT);\n",
    "connect to another database": "connect {other} 127.0.0.1\nCREATE TABLE planted (id INT);\n",
    "LOAD DATA LOCAL of a file of this host": "LOAD DATA LOCAL INFILE '{secret}' INTO TABLE loot;\n",
}


@pytest.mark.parametrize("case", sorted(UNSCANNED))
def test_the_restore_client_refuses_commands_even_if_the_scan_were_bypassed(
    case: str,
    new_database: Callable[[], str],  # noqa: F811
    marker: Path,
    tmp_path: Path,
) -> None:
    # given a dump holding a client command, loaded straight through the restore's client (no scan)
    from backstop.engines.mysql_restore import restore_server

    fresh, other = new_database(), new_database()
    script, secret = tmp_path / "script.sql", tmp_path / "secret.txt"
    script.write_text(f"\\! touch {marker}\n")
    secret.write_text("the contents of a file only this host has\n")
    dump = tmp_path / "dump.sql"
    dump.write_text(
        "CREATE TABLE loot (line TEXT);\n"
        + UNSCANNED[case].format(marker=marker, script=script, other=other, secret=secret)
        + "CREATE TABLE after_the_command (id INT);\n"
    )
    db = MysqlDatabase.model_validate(entry(fresh) | {"engine": "mysql"})
    run_dir = tmp_path / "run"
    run_dir.mkdir()

    # when it is loaded
    with restore_server(db, run_dir) as server, pytest.raises(RestoreError) as failure:
        server.load(dump, fresh, run_dir)

    # then the client stopped at the command: nothing ran, nothing was written elsewhere or read from here
    assert "Loading the dump into the fresh database" in str(failure.value)
    assert not marker.exists()
    assert query(other, "SHOW TABLES") == []
    assert query(fresh, "SELECT COUNT(*) FROM loot") == [(0,)]
    assert query(fresh, "SHOW TABLES") == [("loot",)]


def test_a_client_without_sandbox_mode_is_refused_before_anything_is_touched(
    committed: tuple[Any, Manifest],
    target: str,
    store: S3Store,
    tmp_path: Path,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a mariadb client first on PATH that has no --sandbox option (an older client)
    config, _manifest = committed
    real = "/usr/bin/mariadb"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    client = bin_dir / "mariadb"
    client.write_text(
        f'#!/bin/bash\nif [ "$1" = "--help" ]; then {real} --help | grep -v -- sandbox; exit 0; fi\nexec {real} "$@"\n'
    )
    client.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    before = everything(target)

    # when a backup is restored
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

    # then it is refused in one sentence naming the client, and nothing was created or changed
    message = str(failure.value)
    assert message.startswith(f"The MySQL client {client} has no --sandbox option") and ". " not in message
    assert everything(target) == before
    assert databases_like(f"{target}\\_") == []
    assert leftovers(work_dir) == []
