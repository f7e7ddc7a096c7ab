"""TLS to MySQL and MariaDB: a verified server gets the backup and the restore, no other server gets the password.

A private TLS-only MariaDB (``tls_servers.tls_mariadb``: ``require_secure_transport``, so anything that
connected over TCP without TLS would be refused) stands in for a real server; the machine's own MariaDB on
3306 is the plain one; impostors ask for the password in clear or encrypted with their own key.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import MysqlDatabase
from backstop.engines.mysql import MysqlEngine
from backstop.engines.mysql_restore import restore_server
from backstop.errors import RestoreError, SourceError
from backstop.services.server_restore import ServerRestoreService
from tests.engines.tls_servers import (
    MYSQL_USER,
    PASSWORD,
    Certificates,
    Impostor,
    TlsMariadb,
    certificates,  # noqa: F401 - the fixture
    mysql_impostor,
    tls_mariadb,  # noqa: F401 - the fixture
)
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("mysql-tls")

NAME = "mytls"
PASSWORD_ENV = "BACKSTOP_TEST_MYSQL_TLS_PASSWORD"


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


@pytest.fixture
def shop(tls_mariadb: TlsMariadb) -> Iterator[str]:  # noqa: F811
    """A database on the TLS server with two tables and rows; dropped afterwards with what restores derived."""
    name = f"shop_{os.getpid()}_{os.urandom(3).hex()}"
    with tls_mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"USE `{name}`")
        cur.execute("CREATE TABLE customers (id int PRIMARY KEY, name varchar(40) NOT NULL) ENGINE=InnoDB")
        cur.execute("CREATE TABLE orders (id int PRIMARY KEY, customer int, total decimal(10,2)) ENGINE=InnoDB")
        cur.executemany("INSERT INTO customers VALUES (%s, %s)", [(i, f"customer {i}") for i in range(1, 51)])
        cur.executemany("INSERT INTO orders VALUES (%s, %s, %s)", [(i, 1 + i % 50, i * 1.5) for i in range(1, 401)])
    yield name
    with tls_mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s", (name + "%",))
        for (derived,) in cur.fetchall():
            cur.execute(f"DROP DATABASE IF EXISTS `{derived}`")


def entry(server: TlsMariadb, dbname: str, **tls: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "engine": "mysql",
        "host": "127.0.0.1",
        "port": server.port,
        "dbname": dbname,
        "user": MYSQL_USER,
        "password_env": PASSWORD_ENV,
        **tls,
    }


def verified(server: TlsMariadb) -> dict[str, str]:
    return {"tls": "verify-full", "tls_ca": str(server.certificates.ca)}


def contents(server: TlsMariadb, dbname: str) -> dict[str, list[tuple[Any, ...]]]:
    with server.admin(dbname) as conn, conn.cursor() as cur:
        found = {}
        for table in ("customers", "orders"):
            cur.execute(f"SELECT * FROM {table} ORDER BY id")
            found[table] = list(cur.fetchall())
        return found


def yes(_plan: object) -> bool:
    return True


def restore_copy(config: Any, store: S3Store, server: TlsMariadb, target: str) -> Any:
    url = f"mysql://{MYSQL_USER}@127.0.0.1:{server.port}/{target}"
    return ServerRestoreService(config, store).restore(NAME, "latest", url, dry_run=False, confirm=yes)


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
    tls_mariadb: TlsMariadb,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given a database on a server that takes TCP connections over TLS only, configured verify-full with its CA
    config = make_config(entry(tls_mariadb, shop, **verified(tls_mariadb)))

    # when it is backed up and restored into another database of that server
    outcome = run_backup(config, store, at(21), database=NAME)
    restored = restore_copy(config, store, tls_mariadb, f"{shop}_copy")

    # then both went through (PyMySQL, mariadb-dump and the mariadb client all used TLS) and the copy is exact
    assert outcome.created and outcome.manifest.integrity.passed, outcome
    assert restored.restored
    assert contents(tls_mariadb, f"{shop}_copy") == contents(tls_mariadb, shop)


def test_the_dump_and_load_tools_get_the_tls_settings_and_never_the_password(
    tls_mariadb: TlsMariadb,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
    children: list[Child],
) -> None:
    # given a verify-full database whose password is in the environment
    config = make_config(entry(tls_mariadb, shop, **verified(tls_mariadb)))

    # when it is backed up and restored
    run_backup(config, store, at(21), database=NAME)
    restore_copy(config, store, tls_mariadb, f"{shop}_copy")

    # then the dump tool and the client that loads the dump were told to verify the server against the CA
    connecting = [argv for argv, _ in children if any(a.startswith("--host=") for a in argv)]
    assert {Path(argv[0]).name for argv in connecting} >= {"mariadb-dump", "mariadb"}
    for argv in connecting:
        assert {"--ssl", f"--ssl-ca={tls_mariadb.certificates.ca}", "--ssl-verify-server-cert"} <= set(argv), argv
    # and no child saw the password, in argv or environment
    assert not [argv for argv, env in children if PASSWORD in " ".join(argv) or PASSWORD in env.values()]


def snapshot_error(config: Any, work_dir: Path) -> str:
    with pytest.raises(SourceError) as refused, MysqlEngine(config.database(NAME)).snapshot(work_dir):
        pass
    return str(refused.value)


def test_a_certificate_from_another_ca_is_refused_in_one_sentence(
    tls_mariadb: TlsMariadb,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given verify-full with a CA that did not sign the server's certificate
    config = make_config(entry(tls_mariadb, shop, tls="verify-full", tls_ca=str(tls_mariadb.certificates.other_ca)))

    # when a backup connects, then it is refused in one sentence naming what to check (the handshake failed
    # before PyMySQL sent its handshake response, which is where the password's scramble would go)
    message = snapshot_error(config, work_dir)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "issued by a CA in tls_ca" in message, message
    assert message.endswith(".") and PASSWORD not in message


def test_verify_full_refuses_a_server_without_tls(
    certificates: Certificates,  # noqa: F811
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given verify-full against the machine's own MariaDB, which has TLS off
    config = make_config(
        {
            "name": NAME,
            "engine": "mysql",
            "host": "127.0.0.1",
            "port": 3306,
            "dbname": "mysql",
            "user": "root",
            "password_env": PASSWORD_ENV,
            "tls": "verify-full",
            "tls_ca": str(certificates.ca),  # the server offers no TLS, so never used
        }
    )

    # when a backup connects, then it is refused before it authenticates
    message = snapshot_error(config, work_dir)
    assert "SSL is required but the server doesn't support it" in message and "tls: verify-full" in message


def test_require_accepts_a_certificate_it_cannot_verify_and_verify_full_does_not(
    tls_mariadb: TlsMariadb,  # noqa: F811
    shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given the server's certificate, from a CA nothing on this machine trusts
    # when a database on it is configured require, a backup and a restore go through
    config = make_config(entry(tls_mariadb, shop, tls="require"))
    outcome = run_backup(config, store, at(21), database=NAME)
    assert outcome.created and outcome.manifest.integrity.passed, outcome
    assert restore_copy(config, store, tls_mariadb, f"{shop}_copy").restored

    # and configured verify-full with the default bundles, it is refused
    message = snapshot_error(make_config(entry(tls_mariadb, shop, tls="verify-full")), work_dir)
    assert "CERTIFICATE_VERIFY_FAILED" in message and "system and RDS CA bundles" in message

    # and configured off, the TLS-only server refuses the same credentials (MariaDB says "access denied" to a
    # connection without TLS under require_secure_transport): off really sends no TLS
    message = snapshot_error(make_config(entry(tls_mariadb, shop, tls="off")), work_dir)
    assert "access denied" in message, message


@pytest.fixture(params=["mysql_clear_password", "caching_sha2_password"])
def impostor(request: pytest.FixtureRequest) -> Iterator[Impostor]:
    yield from mysql_impostor(request.param)


@pytest.mark.parametrize("tls", ["off", "verify-full"])
def test_an_impostor_asking_for_the_password_in_clear_or_under_its_own_key_gets_nothing(
    impostor: Impostor,
    tls: str,
    certificates: Certificates,  # noqa: F811
    make_config: Callable[..., Any],
    work_dir: Path,
) -> None:
    # given a server on the database's address, without TLS, that asks for the password in clear, or for a full
    # caching_sha2_password authentication with an RSA key of its own
    extra = {"tls_ca": str(certificates.ca)} if tls == "verify-full" else {}
    config = make_config(
        {
            "name": NAME,
            "engine": "mysql",
            "host": "127.0.0.1",
            "port": impostor.port,
            "dbname": "app",
            "user": MYSQL_USER,
            "password_env": PASSWORD_ENV,
            "tls": tls,
            **extra,
        }
    )
    db = config.database(NAME)
    assert isinstance(db, MysqlDatabase)

    # when a backup and a restore connect to it
    backup = snapshot_error(config, work_dir)
    with pytest.raises(RestoreError) as restore, restore_server(db, work_dir):
        pass

    # then both are refused in one sentence, and the impostor got nothing of the password
    for message in (backup, str(restore.value)):
        assert message.endswith(".") and PASSWORD not in message
        expected = "SSL is required" if tls == "verify-full" else "Backstop gives only to a server it verified"
        assert expected in message, message
    assert not impostor.got(PASSWORD)
