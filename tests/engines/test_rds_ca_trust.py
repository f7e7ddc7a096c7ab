"""verify-full without ``tls_ca`` trusts the RDS CA bundle the image carries, for every client a backup runs.

The bundle's path (``tls.RDS_CA_BUNDLE``, where the runner image puts functions/certs/rds-global-bundle.pem)
is pointed at a file holding the self-made CA of the private TLS-only servers (``tls_servers``), as if that
CA were Amazon RDS's; the machine's own system bundle stays as it is, so the trust is the two combined, as in
the image. A backup then goes through with nothing configured but ``tls: verify-full``: psycopg and pg_dump,
or PyMySQL and mariadb-dump, each verified the server against that file. With another CA at that path, the
same database is refused.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.engines import tls
from backstop.engines.mysql import MysqlEngine
from backstop.engines.postgres import PostgresEngine
from backstop.errors import SourceError
from tests.engines.tls_servers import (
    MYSQL_USER,
    PASSWORD,
    TlsMariadb,
    TlsPostgres,
    certificates,  # noqa: F401 - the fixture
    tls_mariadb,  # noqa: F401 - the fixture
    tls_postgres,  # noqa: F401 - the fixture
)
from tests.services import at, run_backup

NAME = "rds"
PASSWORD_ENV = "BACKSTOP_TEST_RDS_TLS_PASSWORD"


@pytest.fixture(autouse=True)
def password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)


def verify_full(engine: str, port: int, dbname: str, user: str) -> dict[str, Any]:
    """A server database configured as one on RDS would be: verify-full, and no tls_ca."""
    return {
        "name": NAME,
        "engine": engine,
        "host": "127.0.0.1",
        "port": port,
        "dbname": dbname,
        "user": user,
        "password_env": PASSWORD_ENV,
        "tls": "verify-full",
    }


@pytest.fixture
def mariadb_shop(tls_mariadb: TlsMariadb) -> Iterator[str]:  # noqa: F811
    """A small database on the TLS-only MariaDB; dropped afterwards."""
    name = f"rds_{os.getpid()}_{os.urandom(3).hex()}"
    with tls_mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}`")
        cur.execute(f"CREATE TABLE `{name}`.customers (id int PRIMARY KEY, name varchar(40) NOT NULL) ENGINE=InnoDB")
        cur.executemany(f"INSERT INTO `{name}`.customers VALUES (%s, %s)", [(i, f"c {i}") for i in range(1, 21)])
    yield name
    with tls_mariadb.admin() as conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.mark.xdist_group("postgres-tls")
def test_verify_full_reaches_a_postgres_server_whose_ca_is_in_the_rds_bundle(
    tls_postgres: TlsPostgres,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a verify-full database without tls_ca, and the server's CA in the RDS bundle
    config = make_config(verify_full("postgres", tls_postgres.port, "postgres", "postgres"))
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", tls_postgres.certificates.ca)

    # when it is backed up, then psycopg and pg_dump verified the server and the backup is committed
    outcome = run_backup(config, store, at(21), database=NAME)
    assert outcome.created and outcome.manifest.integrity.passed, outcome

    # and with another CA in the RDS bundle, the same server is refused
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", tls_postgres.certificates.other_ca)
    with pytest.raises(SourceError) as refused, PostgresEngine(config.database(NAME)).snapshot(work_dir):
        pass
    assert "certificate verify failed" in str(refused.value) and "system and RDS CA bundles" in str(refused.value)


@pytest.mark.xdist_group("mysql-tls")
def test_verify_full_reaches_a_mariadb_server_whose_ca_is_in_the_rds_bundle(
    tls_mariadb: TlsMariadb,  # noqa: F811
    mariadb_shop: str,
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a verify-full database without tls_ca, and the server's CA in the RDS bundle
    config = make_config(verify_full("mysql", tls_mariadb.port, mariadb_shop, MYSQL_USER))
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", tls_mariadb.certificates.ca)

    # when it is backed up, then PyMySQL and mariadb-dump verified the server and the backup holds its rows
    outcome = run_backup(config, store, at(21), database=NAME)
    assert outcome.created and outcome.manifest.integrity.passed, outcome
    assert outcome.manifest.tables["customers"].rows == 20

    # and with another CA in the RDS bundle, the same server is refused
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", tls_mariadb.certificates.other_ca)
    with pytest.raises(SourceError) as refused, MysqlEngine(config.database(NAME)).snapshot(work_dir):
        pass
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused.value) and "system and RDS CA bundles" in str(refused.value)
