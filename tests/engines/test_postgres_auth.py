"""Passwords against a private PostgreSQL cluster with scram-sha-256: handed to pg_dump only through a
0600 file, and never repeated anywhere when they are wrong."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import SourceError
from tests.services import RecordingNotifier, at, failure_records, leftovers, open_uploads, run_backup

pytestmark = pytest.mark.xdist_group("postgres")

PG_BIN = Path("/usr/lib/postgresql/15/bin")
RIGHT_PASSWORD = "right:horse\\battery staple"
SENTINEL = "S3ntinel-wr0ng-pa55word-7f3a"


@dataclass(frozen=True)
class Cluster:
    port: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway cluster requiring scram-sha-256 passwords, on a free port (initdb runs as postgres under root)."""
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        pytest.skip(f"initdb is not available at {initdb}: a private password-protected cluster cannot be created")
    as_root = os.geteuid() == 0
    # initdb refuses to run as root; the postgres account cannot enter pytest's 0700 root temp dirs either.
    base = Path(tempfile.mkdtemp(prefix="backstop-pgcluster-"))
    run: list[str] = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    data, pwfile = base / "data", base / "pwfile"
    pwfile.write_text(RIGHT_PASSWORD + "\n")
    if as_root:
        shutil.chown(pwfile, "postgres", "postgres")
    port = _free_port()
    subprocess.run(
        [*run, str(initdb), "-D", str(data), "-U", "postgres", "--auth=scram-sha-256", f"--pwfile={pwfile}"],
        check=True,
        capture_output=True,
    )
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base}"
    pg_ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(
        [*run, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield Cluster(port=port)
    finally:
        subprocess.run([*run, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def entry(cluster: Cluster) -> dict[str, Any]:
    return {
        "name": "pg",
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": cluster.port,
        "dbname": "postgres",
        "user": "postgres",
        "password_env": "BACKSTOP_TEST_PG_PASSWORD",
    }


def test_the_right_password_reaches_pg_dump_through_a_private_file_that_is_removed(
    cluster: Cluster,
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a password-protected server (whose password needs .pgpass escaping) and no PGPASSWORD anywhere
    with psycopg.connect(
        host="127.0.0.1", port=cluster.port, user="postgres", dbname="postgres", password=RIGHT_PASSWORD
    ) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes VALUES (1, 'a'), (2, 'b') ON CONFLICT DO NOTHING")
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("BACKSTOP_TEST_PG_PASSWORD", RIGHT_PASSWORD)

    # when it is backed up
    manifest = run_backup(make_config(entry(cluster)), store, at(21), database="pg").manifest

    # then pg_dump could log in, the dump is counted, and the password file is gone with the run directory
    assert manifest.tables["public.notes"].rows == 2
    assert manifest.integrity.passed
    assert leftovers(work_dir) == []


def test_a_wrong_password_fails_clearly_and_appears_nowhere(
    cluster: Cluster,
    make_config: Callable[..., Any],
    store: S3Store,
    s3: Any,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # given a configuration whose password variable holds a wrong, recognisable password
    monkeypatch.setenv("BACKSTOP_TEST_PG_PASSWORD", SENTINEL)
    notifier = RecordingNotifier()

    # when the backup runs
    with caplog.at_level("DEBUG"), pytest.raises(SourceError) as failure:
        run_backup(make_config(entry(cluster)), store, at(21), database="pg", notifier=notifier)

    # then it fails saying authentication failed, and the password is in no exception, log, output, record or alert
    message = str(failure.value)
    assert "password authentication failed" in message
    assert "pg" in message
    chain: list[str] = []
    error: BaseException | None = failure.value
    while error is not None:
        chain.append(repr(error))
        error = error.__cause__ or error.__context__
    out, err = capfd.readouterr()
    records = failure_records(s3, "pg")
    assert records and records[0]["error"] == "SourceError"
    for text in [*chain, caplog.text, out, err, json.dumps(records), json.dumps(notifier.alerts)]:
        assert SENTINEL not in text
    assert not store.manifest_exists("pg-20261121T020000Z")
    assert open_uploads(s3) == []
    assert leftovers(work_dir) == []
