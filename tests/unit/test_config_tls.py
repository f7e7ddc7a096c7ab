"""``tls`` and ``tls_ca``: their defaults, what is refused, what restore targets and drill servers keep, where
verify-full's CA bundle comes from, and what happens with a libpq that cannot restrict authentication."""

from __future__ import annotations

import stat
from pathlib import Path
from typing import Any

import pytest
import yaml

from backstop.config import MysqlDatabase, PostgresDatabase, parse_config
from backstop.config.targets import target_for, tls_moved_to
from backstop.engines import tls
from backstop.errors import ConfigError, SourceError
from tests.engines.tls_servers import make_certificates


def database(**fields: Any) -> PostgresDatabase | MysqlDatabase:
    entry = {"name": "app", "engine": "postgres", "host": "db.internal", "dbname": "app", "user": "backstop"}
    config = parse_config(yaml.safe_dump({"bucket": "b-backups", "databases": [{**entry, **fields}]}))
    db = config.databases[0]
    assert isinstance(db, PostgresDatabase | MysqlDatabase)
    return db


@pytest.mark.parametrize(
    ("host", "mode"),
    [
        ("db.internal", "verify-full"),
        ("mydb.abc123.eu-west-1.rds.amazonaws.com", "verify-full"),
        ("10.0.3.7", "verify-full"),
        ("localhost", "off"),
        ("LocalHost", "off"),
        ("127.0.0.1", "off"),
        ("127.9.8.7", "off"),
    ],
)
def test_tls_is_verify_full_unless_the_host_is_this_machine(host: str, mode: str) -> None:
    assert database(host=host).tls_mode == mode
    assert database(engine="mysql", host=host).tls_mode == mode


def test_off_for_another_host_is_taken_only_where_it_is_written() -> None:
    assert database(tls="off").tls_mode == "off"
    assert database(tls="require").tls_mode == "require"


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"tls": "prefer"}, "databases[0].tls: Input should be 'verify-full', 'require' or 'off'"),
        ({"tls": "require", "tls_ca": "/etc/ca.pem"}, "databases[0].tls_ca: tls_ca is used only by tls: verify-full"),
        ({"host": "127.0.0.1", "tls_ca": "/etc/ca.pem"}, "and tls here is off"),
        ({"tls_ca": "certs/ca.pem"}, "databases[0].tls_ca: 'certs/ca.pem' is not an absolute path"),
        (
            {"drill": {"server": {"host": "scratch", "user": "u", "tls": "off", "tls_ca": "/etc/ca.pem"}}},
            "databases[0].drill.server.tls_ca: tls_ca is used only by tls: verify-full",
        ),
    ],
)
def test_tls_settings_that_cannot_work_are_refused_where_they_are_written(
    fields: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        database(**fields)
    assert fragment in str(refused.value)


def test_a_restore_target_keeps_the_source_s_tls_but_not_what_does_not_fit_its_own_host() -> None:
    db = database(
        tls_ca="/etc/backstop/internal-ca.pem",
        restore_targets={
            "staging": {"host": "staging.internal", "dbname": "app_staging"},
            "local": {"host": "127.0.0.1", "dbname": "app_local"},
            "relaxed": {"dbname": "app_relaxed", "tls": "require"},
        },
    )
    staging, local, relaxed = (target_for(db, name) for name in ("staging", "local", "relaxed"))
    assert isinstance(staging, PostgresDatabase) and isinstance(local, PostgresDatabase)
    assert isinstance(relaxed, PostgresDatabase)
    assert (staging.tls_mode, staging.tls_ca) == ("verify-full", Path("/etc/backstop/internal-ca.pem"))
    assert (local.tls_mode, local.tls_ca) == ("off", None)
    assert (relaxed.tls_mode, relaxed.tls_ca) == ("require", None)


def test_tls_off_written_for_the_source_is_not_carried_to_another_host() -> None:
    db = database(
        host="legacy.internal",
        tls="off",
        restore_targets={"same": {"dbname": "app_copy"}, "elsewhere": {"host": "new.internal"}},
    )
    assert target_for(db, "same").tls_mode == "off"  # type: ignore[union-attr]  # a server target
    assert target_for(db, "elsewhere").tls_mode == "verify-full"  # type: ignore[union-attr]  # a server target
    assert isinstance(db, PostgresDatabase)
    assert tls_moved_to(db, "new.internal") == {"tls": None, "tls_ca": None}
    assert tls_moved_to(db, "LEGACY.internal") == {"tls": "off", "tls_ca": None}


def test_a_drill_server_has_its_own_tls_not_the_source_s() -> None:
    db = database(tls="require", drill={"server": {"host": "scratch.internal", "user": "drill"}})
    assert db.drill is not None
    assert db.tls_mode == "require" and db.drill.server.tls_mode == "verify-full"


def test_a_target_may_not_set_tls_settings_that_cannot_work() -> None:
    with pytest.raises(ConfigError) as refused:
        database(restore_targets={"copy": {"dbname": "app_copy", "tls": "off", "tls_ca": "/etc/ca.pem"}})
    assert "restore_targets.copy: Restore target copy of app: tls_ca is used only by tls: verify-full" in str(
        refused.value
    )


# -- the CA bundle verify-full trusts ---------------------------------------------------------------


@pytest.fixture
def bundles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """A system bundle and an RDS bundle, each a real PEM certificate, where the module looks for them."""
    for name in ("system", "rds"):
        (tmp_path / name).mkdir()
    system, rds = make_certificates(tmp_path / "system"), make_certificates(tmp_path / "rds")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setattr(tls, "SYSTEM_BUNDLES", (tmp_path / "absent.pem", system.ca))
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", rds.ca)
    return system.ca, rds.ca


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


def test_verify_full_trusts_the_system_bundle_and_the_rds_bundle_together(
    bundles: tuple[Path, Path], run_dir: Path
) -> None:
    system, rds = bundles
    with tls.trust_file(database(), run_dir, SourceError) as trusted:
        assert trusted is not None and trusted.parent == run_dir
        text = trusted.read_text()
        assert system.read_text().strip() in text and rds.read_text().strip() in text
    assert not trusted.exists()  # removed with the run


def test_without_the_rds_bundle_the_system_bundle_is_trusted_as_it_is(
    bundles: tuple[Path, Path], run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", run_dir / "absent.pem")
    with tls.trust_file(database(), run_dir, SourceError) as trusted:
        assert trusted == bundles[0]


def test_tls_ca_replaces_the_default_bundles_and_nothing_is_trusted_without_verify_full(
    bundles: tuple[Path, Path], run_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "own").mkdir()
    own = make_certificates(tmp_path / "own").ca
    with tls.trust_file(database(tls_ca=str(own)), run_dir, SourceError) as trusted:
        assert trusted == own
    with tls.trust_file(database(tls="require"), run_dir, SourceError) as trusted:
        assert trusted is None


@pytest.mark.parametrize("content", [None, b"not a certificate\n"])
def test_a_tls_ca_that_cannot_be_used_is_refused_in_one_sentence(
    content: bytes | None, run_dir: Path, tmp_path: Path
) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError) as refused, tls.trust_file(database(tls_ca=str(path)), run_dir, SourceError):
        pass
    message = str(refused.value)
    assert message.startswith(f"Tls_ca of app ({path}) cannot be used: ") and message.endswith(".")


def test_no_bundle_at_all_is_refused_naming_the_remedy(
    bundles: tuple[Path, Path], run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls, "SYSTEM_BUNDLES", ())
    monkeypatch.setattr(tls, "RDS_CA_BUNDLE", run_dir / "absent.pem")
    with pytest.raises(SourceError) as refused, tls.trust_file(database(), run_dir, SourceError):
        pass
    assert "install the system's CA certificates (ca-certificates) or set tls_ca for app" in str(refused.value)


# -- a libpq that cannot restrict authentication ------------------------------------------------------


def fake_pg_dump(directory: Path, stderr: str) -> str:
    directory.mkdir()
    path = directory / "pg_dump"
    path.write_text(f"#!/bin/sh\necho '{stderr}' >&2\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_the_tools_libpq_is_asked_whether_it_knows_require_auth(tmp_path: Path) -> None:
    old = fake_pg_dump(tmp_path / "old", 'pg_dump: error: invalid connection option "require_auth"')
    new = fake_pg_dump(tmp_path / "new", 'pg_dump: error: connection to server on socket "/x/.s.PGSQL.1" failed')
    assert tls.tool_restricts_auth(old) is False
    assert tls.tool_restricts_auth(new) is True
    assert tls.tool_restricts_auth(str(Path(new).with_name("pg_restore"))) is True  # asks the pg_dump beside it
    assert tls.tool_restricts_auth(str(tmp_path / "nowhere" / "pg_dump")) is False


@pytest.mark.parametrize(
    ("fields", "password", "restricted"),
    [
        ({"tls": "verify-full"}, "pw", False),  # the server proved itself before it can ask anything
        ({"host": "127.0.0.1"}, "pw", False),  # the password goes to no other machine
        ({"tls": "require"}, None, False),  # no password to give
    ],
)
def test_an_old_libpq_is_used_without_require_auth_where_no_password_can_reach_an_unproven_server(
    fields: dict[str, Any], password: str | None, restricted: bool
) -> None:
    db = database(**fields)
    assert isinstance(db, PostgresDatabase)
    assert tls.auth_restricted(db, "pg_dump", False, password, SourceError) is restricted
    assert tls.auth_restricted(db, "pg_dump", True, password, SourceError) is True


def test_an_old_libpq_is_refused_where_an_unproven_server_could_ask_for_the_password_in_clear() -> None:
    db = database(tls="require")
    assert isinstance(db, PostgresDatabase)
    with pytest.raises(SourceError) as refused:
        tls.auth_restricted(db, "pg_dump", False, "pw", SourceError)
    message = str(refused.value)
    assert message == (
        "pg_dump uses a libpq older than 16, which would send app's password to whatever server at db.internal "
        "asks for it in clear, and tls: require does not verify that server: install PostgreSQL 16 or newer "
        "client tools, or set tls: verify-full."
    )
