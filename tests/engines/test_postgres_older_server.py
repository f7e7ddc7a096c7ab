"""Restores into a PostgreSQL server older than the client tools: pg_restore's script through psql.

The runner image carries pg_restore 17; this machine's server is 15. pg_restore 17 connected to it
sends ``SET transaction_timeout = 0`` first, which 15 refuses, so every restore into it failed (the
image test showed it). Here a ``pg_restore`` on PATH in front of the machine's own plays version 17:
it reports 17.6 and writes the script header pg_restore 17 writes, with the real pg_restore doing
all the rest. The image test restores with the real pg_restore 17.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.engines.pg_script import ScriptHeader
from backstop.errors import RestoreError
from backstop.manifest import Manifest
from backstop.services.artifacts import fetch_artifact
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_postgres_engine import (
    HOST,
    NAME,
    PORT,
    new_database,  # noqa: F401 - the fixture
    postgres_entry,
    table_checksums,
)
from tests.engines.test_postgres_restore import backed_up, databases_like, drop_derived, other_data, url  # noqa: F401
from tests.services import leftovers

pytestmark = pytest.mark.xdist_group("postgres")

REAL = shutil.which("pg_restore")
HEADER_17 = (
    b"--\n-- PostgreSQL database dump\n--\n\n\\restrict k3Y\n\n"
    b"SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\n"
    b"SET transaction_timeout = 0;\nSET client_encoding = 'UTF8';\n"
    b"SELECT pg_catalog.set_config('search_path', '', false);\nSET row_security = off;\n\n"
)
BODY = (
    b"--\n-- Name: t; Type: TABLE; Schema: public; Owner: postgres\n--\n\nCREATE TABLE public.t (x text);\n"
    b"COPY public.t (x) FROM stdin;\nSET transaction_timeout = 0;\n\\.\n\n"
)
KNOWN = frozenset({"statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout", "client_encoding"})
KNOWN |= {"row_security"}


def through(header: bytes, chunk: int) -> tuple[bytes, list[str]]:
    out: list[bytes] = []
    filtered = ScriptHeader(KNOWN, out.append)
    for i in range(0, len(header), chunk):
        filtered.write(header[i : i + chunk])
    filtered.close()
    return b"".join(out), filtered.left_out


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_the_header_loses_only_the_setting_the_server_lacks_and_the_rest_passes_byte_for_byte(chunk: int) -> None:
    # when a pg_restore 17 script passes through the header filter in chunks of any size
    out, left_out = through(HEADER_17 + BODY, chunk)

    # then only the header's SET transaction_timeout is gone: the same line in the data is kept
    assert out == (HEADER_17 + BODY).replace(b"SET transaction_timeout = 0;\n", b"", 1)
    assert out.count(b"SET transaction_timeout = 0;\n") == 1
    assert left_out == ["transaction_timeout"]


@pytest.mark.parametrize("chunk", [1, 1 << 20])
def test_a_script_without_restrict_is_refused_before_any_object_passes(chunk: int) -> None:
    # given a script whose header lacks \restrict (a client from before the meta-command fix)
    script = HEADER_17.replace(b"\\restrict k3Y\n", b"") + BODY

    # when it passes through the filter, then it is refused, and nothing after the header was passed on
    with pytest.raises(RestoreError, match=r"did not start its script with \\restrict.*17\.6, 16\.10, 15\.14"):
        through(script, chunk)


def test_psql_after_restrict_runs_no_meta_command(tmp_path: Path) -> None:
    # given a script that, after its \restrict, carries a shell escape (what a hostile archive could hold)
    mark = tmp_path / "pwned"
    script = f"\\restrict k3Y\nSELECT 1;\n\\! touch {mark}\n".encode()

    # when the machine's psql runs it as the restore runs it
    psql = subprocess.run(
        ["psql", "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", f"host={HOST} port={PORT} user=postgres"],
        input=script,
        capture_output=True,
        check=False,
    )

    # then psql refuses the meta-command and ran nothing of it: the guarantee the script route rests on
    assert psql.returncode != 0
    assert b"restrict" in psql.stderr.lower()
    assert not mark.exists()


def pg_restore_17(directory: Path, *, header_edit: str = "") -> Path:
    """A pg_restore that says it is 17.6 and writes pg_restore 17's header; the machine's does the work."""
    assert REAL is not None
    insert = r"/^SET idle_in_transaction_session_timeout = 0;$/a SET transaction_timeout = 0;"
    script = directory / "pg_restore"
    script.write_text(
        "#!/bin/bash\nset -o pipefail\n"
        'for a in "$@"; do\n'
        '  if [ "$a" = --version ]; then echo "pg_restore (PostgreSQL) 17.6"; exit 0; fi\n'
        '  if [ "$a" = --file=- ]; then\n'
        f'    "{REAL}" "$@" | sed -e \'{insert}\' {header_edit}; exit $?\n'
        "  fi\n"
        "done\n"
        f'exec "{REAL}" "$@"\n'
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def client_17(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    def install(**kwargs: Any) -> Path:
        directory = tmp_path / "pg17"
        directory.mkdir(exist_ok=True)
        tool = pg_restore_17(directory, **kwargs)
        monkeypatch.setenv("PATH", f"{directory}:{os.environ['PATH']}")
        return tool

    return install


def test_the_played_client_reproduces_the_failure_of_pg_restore_17_against_this_server(
    backed_up: tuple[str, Manifest, Callable[..., Any]],  # noqa: F811
    client_17: Callable[..., Path],
    store: S3Store,
    tmp_path: Path,
) -> None:
    # given the archive of a backup and the played pg_restore 17
    _source, manifest, _ = backed_up
    tool = client_17()
    archive = tmp_path / "archive.dump"
    fetch_artifact(store, manifest, archive)

    # when its script goes to this server unfiltered, then the server refuses the header, as it refused pg_restore 17
    script = subprocess.run([str(tool), "--format=custom", "--file=-", str(archive)], capture_output=True, check=True)
    assert b"SET transaction_timeout = 0;" in script.stdout
    psql = subprocess.run(
        ["psql", "--no-psqlrc", "--set=ON_ERROR_STOP=1", f"host={HOST} port={PORT} user=postgres dbname=postgres"],
        input=script.stdout,
        capture_output=True,
        check=False,
    )
    assert psql.returncode != 0
    assert b'unrecognized configuration parameter "transaction_timeout"' in psql.stderr


def test_a_restore_with_a_newer_client_than_the_server_goes_through_psql_and_is_complete(
    backed_up: tuple[str, Manifest, Callable[..., Any]],  # noqa: F811
    new_database: Callable[[], str],  # noqa: F811
    client_17: Callable[..., Path],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given a backup, an existing target with other data, and pg_restore 17 in front of a 15 server
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    client_17()

    # when latest is restored into it
    outcome = ServerRestoreService(make_config(postgres_entry(source)), store).restore(
        NAME, "latest", url(target), dry_run=False, confirm=lambda _plan: True
    )
    try:
        # then the target equals the backup, with owners, and the left-out setting is said
        assert outcome.restored
        assert table_checksums(target) == table_checksums(source)
        assert "pg_restore 17.6 sets transaction_timeout, which PostgreSQL 15." in " ".join(outcome.warnings)
        assert databases_like(f"{target}_restore_") == []
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (r"-e '/^\\restrict /d'", r"did not start its script with \\restrict"),
        (r"-e '/^CREATE TABLE public.orders/i SELECT no_such_function();'", r"psql running the restore exited"),
    ],
    ids=["no-restrict", "statement-fails"],
)
def test_a_refused_or_failing_script_leaves_the_target_as_it_was(
    backed_up: tuple[str, Manifest, Callable[..., Any]],  # noqa: F811
    new_database: Callable[[], str],  # noqa: F811
    client_17: Callable[..., Path],
    store: S3Store,
    work_dir: Path,
    edit: str,
    says: str,
) -> None:
    # given an existing target, and a pg_restore 17 whose script is refused or fails half-way
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    client_17(header_edit=edit)

    # when latest is restored into it, then it fails in one sentence naming the cause
    with pytest.raises(RestoreError, match=says):
        ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=lambda _plan: True
        )
    try:
        # and the target is untouched, the fresh database gone, nothing left behind
        assert table_checksums(target) == before
        assert databases_like(f"{target}_") == []
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)
