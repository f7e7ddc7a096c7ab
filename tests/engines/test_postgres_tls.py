"""TLS to PostgreSQL: a verified server gets the backup and the restore, no other server gets the password.

A private TLS-only cluster (``tls_servers.tls_postgres``: ``hostssl`` lines only, so anything that connected
without TLS would be refused) stands in for a real server; the machine's own server on 5432 is the plain one;
impostors ask for the password in clear or as md5 and record what they receive.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import PostgresDatabase
from backstop.engines.postgres import PostgresEngine, restore_server, tool_path
from backstop.engines.tls import tool_restricts_auth
from backstop.errors import RestoreError, SourceError
from backstop.services.drill import DrillService
from backstop.services.server_restore import ServerRestoreService
from tests.engines.tls_servers import (
    PASSWORD,
    Certificates,
    Impostor,
    TlsPostgres,
    certificates,  # noqa: F401 - the fixture
    postgres_impostor,
    tls_postgres,  # noqa: F401 - the fixture
)
from tests.services import RecordingNotifier, at, run_backup

pytestmark = pytest.mark.xdist_group("postgres-tls")

NAME = "pgtls"
PASSWORD_ENV = "BACKSTOP_TEST_PG_TLS_PASSWORD"


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


@pytest.fixture
def shop(tls_postgres: TlsPostgres) -> Iterator[str]:  # noqa: F811
    """A database on the TLS server with two tables and rows; dropped afterwards with what restores derived."""
    name = f"shop_{os.getpid()}_{os.urandom(3).hex()}"
    with tls_postgres.connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    with tls_postgres.connect(name) as conn:
        conn.execute("CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL)")
        conn.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int REFERENCES customers, total numeric)")
        conn.execute("INSERT INTO customers SELECT g, 'customer ' || g FROM generate_series(1, 50) g")
        conn.execute("INSERT INTO orders SELECT g, 1 + g % 50, g * 1.5 FROM generate_series(1, 400) g")
    yield name
    with tls_postgres.connect() as admin:
        for (derived,) in admin.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (name,)
        ).fetchall():
            admin.execute(f'DROP DATABASE IF EXISTS "{derived}" WITH (FORCE)')


def entry(server: TlsPostgres, dbname: str, **tls: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "engine": "postgres",
        "host": "127.0.0.1",
        "port": server.port,
        "dbname": dbname,
        "user": "postgres",
        "password_env": PASSWORD_ENV,
        **tls,
    }


def contents(server: TlsPostgres, dbname: str) -> dict[str, list[tuple[Any, ...]]]:
    with server.connect(dbname) as conn:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall() for table in ("customers", "orders")
        }


def yes(_plan: object) -> bool:
    return True


def verified(server: TlsPostgres) -> dict[str, str]:
    return {"tls": "verify-full", "tls_ca": str(server.certificates.ca)}


Child = tuple[list[str], dict[str, str]]


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[Child]:
    """Every process started through subprocess while the test runs: its argv and its environment."""
    started: list[Child] = []
    real = subprocess.Popen

    class Recorded(real):  # type: ignore[valid-type,misc]  # a subclass of the Popen the code uses
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            env = kwargs.get("env")
            started.append(([str(a) for a in args], dict(os.environ if env is None else env)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    return started


def test_a_backup_and_a_restore_over_verified_tls_give_back_the_source(
    tls_postgres: TlsPostgres,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given a database on a server that accepts TLS connections only, configured verify-full with its CA
    config = make_config(entry(tls_postgres, shop, **verified(tls_postgres)))

    # when it is backed up and restored into another database of that server
    outcome = run_backup(config, store, at(21), database=NAME)
    restored = ServerRestoreService(config, store).restore(
        NAME, "latest", f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/{shop}_copy", dry_run=False, confirm=yes
    )

    # then both went through (every connection, psycopg's, pg_dump's and pg_restore's, was TLS) and the copy is exact
    assert outcome.created and outcome.manifest.integrity.passed, outcome
    assert restored.restored
    assert contents(tls_postgres, f"{shop}_copy") == contents(tls_postgres, shop)


def test_the_dump_and_restore_tools_get_the_tls_settings_and_never_the_password(
    tls_postgres: TlsPostgres,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
    children: list[Child],
) -> None:
    # given a verify-full database whose password is in the environment
    config = make_config(entry(tls_postgres, shop, **verified(tls_postgres)))

    # when it is backed up and restored
    run_backup(config, store, at(21), database=NAME)
    ServerRestoreService(config, store).restore(
        NAME, "latest", f"postgresql://postgres@127.0.0.1:{tls_postgres.port}/{shop}_copy", dry_run=False, confirm=yes
    )

    # then pg_dump and pg_restore connected with verify-full against the configured CA, and SCRAM only where
    # their libpq can be told so
    connecting = {Path(argv[0]).name: arg for argv, _ in children for arg in argv if arg.startswith("--dbname=")}
    assert set(connecting) == {"pg_dump", "pg_restore"}
    for tool, conninfo in connecting.items():
        assert "sslmode=verify-full" in conninfo, conninfo
        assert f"sslrootcert={tls_postgres.certificates.ca}" in conninfo, conninfo
        assert ("require_auth=scram-sha-256,none" in conninfo) == tool_restricts_auth(tool_path(tool)), conninfo
    # and no child saw the password, in argv or environment
    assert not [argv for argv, env in children if PASSWORD in " ".join(argv) or PASSWORD in env.values()]


def snapshot_error(config: Any, work_dir: Path) -> str:
    db = config.database(NAME)
    with pytest.raises(SourceError) as refused, PostgresEngine(db).snapshot(work_dir):
        pass
    return str(refused.value)


def test_a_certificate_from_another_ca_is_refused_in_one_sentence(
    tls_postgres: TlsPostgres,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given verify-full with a CA that did not sign the server's certificate
    config = make_config(entry(tls_postgres, shop, tls="verify-full", tls_ca=str(tls_postgres.certificates.other_ca)))

    # when a backup connects, then it is refused in one sentence (the handshake fails before the startup message,
    # so nothing about the password is sent), naming what to check
    message = snapshot_error(config, work_dir)
    assert "certificate verify failed" in message
    assert "issued by a CA in tls_ca" in message
    assert message.count(". ") == 0 and message.endswith(".")
    assert PASSWORD not in message


def test_verify_full_refuses_a_server_without_tls(
    certificates: Certificates,  # noqa: F811
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given verify-full against the machine's own server, which has TLS off
    config = make_config(
        {
            "name": NAME,
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": 5432,
            "dbname": "postgres",
            "user": "postgres",
            "password_env": PASSWORD_ENV,
            "tls": "verify-full",
            "tls_ca": str(certificates.ca),  # the server offers no TLS, so never used
        }
    )

    # when a backup connects, then it is refused: the server offered no TLS
    message = snapshot_error(config, work_dir)
    assert "does not support SSL" in message and "tls: verify-full" in message


def test_require_accepts_a_certificate_it_cannot_verify_and_verify_full_does_not(
    tls_postgres: TlsPostgres,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given the server's certificate, from a CA nothing on this machine trusts
    # when a database on it is configured require, a backup goes through
    outcome = run_backup(make_config(entry(tls_postgres, shop, tls="require")), store, at(21), database=NAME)
    assert outcome.created and outcome.manifest.integrity.passed, outcome

    # and configured verify-full with the default bundles, it is refused
    message = snapshot_error(make_config(entry(tls_postgres, shop, tls="verify-full")), work_dir)
    assert "certificate verify failed" in message and "system and RDS CA bundles" in message

    # and configured off, the TLS-only server refuses it: off really sends no TLS
    message = snapshot_error(make_config(entry(tls_postgres, shop, tls="off")), work_dir)
    assert "no encryption" in message


@pytest.fixture(params=[3, 5], ids=["cleartext", "md5"])
def impostor(request: pytest.FixtureRequest) -> Iterator[Impostor]:
    yield from postgres_impostor(request.param)


@pytest.mark.parametrize("tls", ["off", "require", "verify-full"])
def test_an_impostor_asking_for_the_password_in_clear_or_md5_gets_nothing(
    impostor: Impostor,
    tls: str,
    certificates: Certificates,  # noqa: F811
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given a server on the database's address that asks for the password in clear (or md5), without TLS
    extra = {"tls_ca": str(certificates.ca)} if tls == "verify-full" else {}
    config = make_config(
        {
            "name": NAME,
            "engine": "postgres",
            "host": "127.0.0.1",
            "port": impostor.port,
            "dbname": "app",
            "user": "postgres",
            "password_env": PASSWORD_ENV,
            "tls": tls,
            **extra,
        }
    )
    db = config.database(NAME)
    assert isinstance(db, PostgresDatabase)

    # when a backup and a restore connect to it
    backup = snapshot_error(config, work_dir)
    with pytest.raises(RestoreError) as restore, restore_server(db, work_dir):
        pass

    # then both are refused in one sentence, and the impostor got nothing of the password
    for message in (backup, str(restore.value)):
        assert message.endswith(".") and PASSWORD not in message
        expected = "does not support SSL" if tls != "off" else "Backstop answers only SCRAM"
        assert expected in message, message
    assert not impostor.got(PASSWORD)
    assert impostor.asked_for_tls == (tls != "off")


@pytest.mark.parametrize("ca", ["ca", "other_ca"])
def test_a_drill_connects_to_its_scratch_server_with_that_server_s_own_tls(
    ca: str,
    tls_postgres: TlsPostgres,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given a source configured require, and a drill server (the same TLS-only server here) configured verify-full
    # with the right CA, or with another one
    server = {
        "host": "localhost",  # the same server under another name (a drill refuses the source's own address)
        "port": tls_postgres.port,
        "user": "postgres",
        "password_env": PASSWORD_ENV,
        "tls": "verify-full",
        "tls_ca": str(getattr(tls_postgres.certificates, ca)),
    }
    config = make_config(entry(tls_postgres, shop, tls="require", drill={"server": server}))
    run_backup(config, store, at(21), database=NAME)

    # when the drill runs
    result = DrillService(config, store, RecordingNotifier()).run(NAME)

    # then it restored into the scratch server under the drill server's TLS, not the source's: verified with the
    # right CA, refused with the other
    if ca == "ca":
        assert result.passed, result.detail
    else:
        assert not result.passed and "certificate verify failed" in result.detail, result.detail
