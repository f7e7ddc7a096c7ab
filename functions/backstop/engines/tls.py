"""TLS to server databases, and no password to a server that has not proven who it is.

Each server database, restore target and drill server has ``tls`` (``config.tls_mode_of``):

- ``verify-full``: TLS, the certificate chains to a trusted CA and names the configured host; a server
  without TLS, or with any other certificate, is refused before anything of the password is sent.
- ``require``: TLS, the certificate is not checked (an eavesdropper learns nothing; an impostor is not
  stopped).
- ``off``: no TLS (the default only for a loopback host).

What verify-full trusts: ``tls_ca`` if configured (that bundle alone), else the system's CA bundle plus
the RDS global bundle where the image carries it (``RDS_CA_BUNDLE``), combined in one file in the run
directory because libpq, PyMySQL and the MariaDB client each take one file.

What a server may ask for: PostgreSQL connections carry ``require_auth=scram-sha-256,none``, so libpq
answers only a SCRAM exchange (which never reveals the password) or no authentication at all, and a
server asking for a cleartext or md5 password gets nothing (libpq 16 or later; ``auth_restricted``
decides what happens with an older one). PyMySQL connections that are not ``verify-full`` refuse to send
the password in clear (``mysql_clear_password``, ``dialog``, the full authentication of
``caching_sha2_password`` and ``sha256_password``) or encrypted with a key the server itself sends:
only scrambles that do not reveal it leave.
"""

from __future__ import annotations

import functools
import os
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import pymysql
from pymysql.constants import CR

from backstop.config import MysqlDatabase, PostgresDatabase, is_loopback
from backstop.errors import BackstopError

RDS_CA_BUNDLE = Path("/usr/local/share/backstop/rds-global-bundle.pem")
"""Where the runner image carries Amazon RDS's global CA bundle (docs/deploy.md, "TLS"); trusted if present."""
SYSTEM_BUNDLES = (
    Path("/etc/ssl/certs/ca-certificates.crt"),  # Debian, Ubuntu, Alpine
    Path("/etc/pki/tls/certs/ca-bundle.crt"),  # Amazon Linux, Fedora, RHEL
    Path("/etc/ssl/cert.pem"),  # macOS, some BSDs
)
TRUST_FILE = "ca-bundle.pem"
REQUIRE_AUTH = "scram-sha-256,none"
"""What a PostgreSQL server may ask of Backstop: a SCRAM exchange, or nothing."""
LIBPQ_REQUIRE_AUTH = 160000
"""The first libpq version that knows ``require_auth``."""
_SSLMODE = {"verify-full": "verify-full", "require": "require", "off": "disable"}


@contextmanager
def trust_file(
    db: PostgresDatabase | MysqlDatabase, run_dir: Path, error: type[BackstopError]
) -> Iterator[Path | None]:
    """The CA bundle verify-full checks ``db``'s certificate against; None unless ``db``'s TLS is verify-full.

    ``error`` (the caller's error class) in one sentence when the bundle is missing or unreadable.
    """
    if db.tls_mode != "verify-full":
        yield None
        return
    if db.tls_ca is not None:
        yield _readable(db.tls_ca, f"tls_ca of {db.name}", error)
        return
    system = next((path for path in _system_candidates() if path.is_file()), None)
    rds = RDS_CA_BUNDLE if RDS_CA_BUNDLE.is_file() else None
    if system is None and rds is None:
        raise error(
            f"No CA bundle to verify {db.host}'s certificate against (tls: verify-full): install the system's "
            f"CA certificates (ca-certificates) or set tls_ca for {db.name}."
        )
    if system is None or rds is None:
        yield _readable(system or rds or RDS_CA_BUNDLE, "the CA bundle", error)
        return
    combined = run_dir / TRUST_FILE
    try:
        combined.write_bytes(system.read_bytes().rstrip(b"\n") + b"\n" + rds.read_bytes())
    except OSError as exc:
        raise error(f"The CA bundle for {db.name} cannot be assembled: {exc.strerror}.") from None
    try:
        yield combined
    finally:
        combined.unlink(missing_ok=True)


def _system_candidates() -> list[Path]:
    configured = os.environ.get("SSL_CERT_FILE")
    return ([Path(configured)] if configured else []) + list(SYSTEM_BUNDLES)


def _readable(path: Path, what: str, error: type[BackstopError]) -> Path:
    """``path``, once it is known to hold at least one PEM certificate; ``error`` in one sentence otherwise."""
    try:
        ssl.create_default_context(cafile=str(path))
    except OSError as exc:  # ssl.SSLError is one too
        problem = exc.strerror if exc.strerror and not isinstance(exc, ssl.SSLError) else "no PEM certificate in it"
        raise error(f"{what[0].upper()}{what[1:]} ({path}) cannot be used: {problem}.") from None
    return path


def describe(db: PostgresDatabase | MysqlDatabase) -> str:
    """How the connection to ``db`` is protected, for a message: ``tls verify-full`` ..."""
    return f"tls {db.tls_mode}" + (f" with tls_ca {db.tls_ca}" if db.tls_ca else "")


def tls_hint(db: PostgresDatabase | MysqlDatabase, reason: str) -> str:
    """What to check when a connection failed for a TLS reason (empty otherwise): the remedy of one sentence."""
    text = reason.lower()
    if "authentication method requirement" in text:  # libpq's require_auth refusal
        return " (Backstop answers only SCRAM: store the role's password as scram-sha-256)"
    if not any(word in text for word in ("ssl", "tls", "certificate")):
        return ""
    if db.tls_mode == "verify-full":
        trusted = f"tls_ca {db.tls_ca}" if db.tls_ca else "the system and RDS CA bundles"
        return (
            f" (tls: verify-full: the server must offer TLS with a certificate for {db.host} issued by a CA in "
            f"{trusted})"
        )
    return f" (tls: {db.tls_mode})"


# -- PostgreSQL ----------------------------------------------------------------------------------


def libpq_settings(db: PostgresDatabase, ca: Path | None, *, restrict_auth: bool) -> dict[str, str]:
    """The connection parameters that carry ``db``'s TLS and what the server may ask for, for psycopg and the tools."""
    settings = {"sslmode": _SSLMODE[db.tls_mode], "gssencmode": "disable"}  # TLS, not GSSAPI, proves the server
    if ca is not None:
        settings["sslrootcert"] = str(ca)
    if restrict_auth:
        settings["require_auth"] = REQUIRE_AUTH
    return settings


def psycopg_restricts_auth() -> bool:
    """Whether the libpq psycopg runs on knows ``require_auth`` (16 or later)."""
    import psycopg

    return psycopg.pq.version() >= LIBPQ_REQUIRE_AUTH


@functools.cache
def tool_restricts_auth(path: str) -> bool:
    """Whether the libpq of the PostgreSQL tool at ``path`` knows ``require_auth``.

    Asked of the tool itself (its libpq may be older or newer than its own version): a connection
    string with ``require_auth`` to a socket that does not exist fails on the socket with libpq 16 or
    later, on the option before. pg_restore reads an archive before it parses a connection string, so
    the pg_dump beside it is asked for it (the same installation, the same libpq).
    """
    probe = Path(path).with_name("pg_dump") if Path(path).name == "pg_restore" else Path(path)
    if not probe.is_file():
        return False
    env = {"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}
    conninfo = "host=/nonexistent-backstop-probe port=1 dbname=probe user=probe require_auth=none"
    try:
        result = subprocess.run(
            [str(probe), "--no-password", "--schema-only", f"--dbname={conninfo}"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env=env,
            check=False,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return b"require_auth" not in result.stderr


def auth_restricted(
    db: PostgresDatabase, client: str, supported: bool, password: str | None, error: type[BackstopError]
) -> bool:
    """Whether ``client`` gets ``require_auth``; ``error`` when it cannot and the server is not proven.

    A client whose libpq predates ``require_auth`` would answer a server that asks for the password in
    clear. That is refused in one sentence when a password is configured, the server is not verified
    (``tls`` is not verify-full) and it is not on a loopback host. Under verify-full the server proved
    its identity before it can ask anything; on a loopback host the password goes to no other machine.
    """
    if supported:
        return True
    if password is None or db.tls_mode == "verify-full" or is_loopback(db.host):
        return False
    raise error(
        f"{client} uses a libpq older than 16, which would send {db.name}'s password to whatever server at "
        f"{db.host} asks for it in clear, and tls: {db.tls_mode} does not verify that server: install PostgreSQL "
        "16 or newer client tools, or set tls: verify-full."
    )


# -- MySQL and MariaDB -----------------------------------------------------------------------------


class _GuardedConnection(pymysql.connections.Connection):
    """A PyMySQL connection that sends the password only as a scramble to a server it has not verified.

    Clear text (``mysql_clear_password``, ``dialog``, the full authentication of the SHA-256 plugins
    over TLS) and RSA with a public key the server sends itself would both hand the password to an
    impostor; under verify-full the server proved its identity first, and both are allowed.
    """

    def __init__(self, *args: Any, verified: bool, **kwargs: Any) -> None:
        self._verified = verified
        self._authenticating = False
        super().__init__(*args, **kwargs)

    def _refuse(self, what: str) -> None:
        raise pymysql.err.OperationalError(
            CR.CR_AUTH_PLUGIN_ERR,
            f"the server asked for the password {what}, which Backstop gives only to a server it verified "
            "(tls: verify-full)",
        )

    def _request_authentication(self) -> None:
        plugin = getattr(self, "_auth_plugin_name", "")  # PyMySQL's own, read from the server's greeting
        if not self._verified and self.password and plugin == "sha256_password":
            self._refuse("through sha256_password")
        self._authenticating = True
        try:
            super()._request_authentication()  # type: ignore[misc]  # PyMySQL's private step, absent from its stubs
        finally:
            self._authenticating = False

    def write_packet(self, payload: bytes) -> None:
        if self._authenticating and not self._verified and self.password and payload == self.password + b"\0":
            self._refuse("in clear")
        super().write_packet(payload)

    @property
    def server_public_key(self) -> bytes | None:
        return self.__dict__.get("_server_public_key")

    @server_public_key.setter
    def server_public_key(self, value: bytes | None) -> None:
        if value and not self.__dict__.get("_verified", False) and self.password:
            self._refuse("encrypted with a key of its own")
        self.__dict__["_server_public_key"] = value


def ssl_context(db: MysqlDatabase, ca: Path | None) -> ssl.SSLContext | None:
    """PyMySQL's TLS for ``db``: None for off (TLS disabled), else a context that verifies (verify-full) or not."""
    mode = db.tls_mode
    if mode == "off":
        return None
    context = ssl.create_default_context(cafile=str(ca) if ca is not None else None)
    # As libpq and the MariaDB client judge certificates (Python 3.13 adds RFC 5280's strict checks).
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "require":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def connect_mysql(
    db: MysqlDatabase, password: str | None, ca: Path | None, **options: Any
) -> pymysql.connections.Connection[Any]:
    """A PyMySQL connection to ``db``'s server under its TLS (``options``: database, charset, autocommit ...).

    TLS is required unless ``tls`` is off (PyMySQL refuses a server that does not offer it before it
    authenticates), and the password goes as a scramble only, unless the server was verified.
    """
    context = ssl_context(db, ca)
    tls: dict[str, Any] = {"ssl_disabled": True} if context is None else {"ssl": context}
    connection: pymysql.connections.Connection[Any] = _GuardedConnection(
        host=db.host,
        port=db.port,
        user=db.user,
        password=password or "",
        connect_timeout=max(1, int(db.connect_timeout.total_seconds())),
        verified=db.tls_mode == "verify-full",
        **tls,
        **options,
    )
    return connection


Flavor = Literal["mariadb", "mysql"]


def client_flavor(version: str) -> Flavor:
    """Whose client a tool's ``--version`` text describes: MariaDB's (``...-MariaDB``, ``mariadb-dump from``) or
    Oracle's."""
    return "mariadb" if "mariadb" in version.lower() else "mysql"


def mysql_tool_options(db: MysqlDatabase, flavor: Flavor, ca: Path | None) -> list[str]:
    """The options that give a mariadb/mysql client tool ``db``'s TLS.

    MariaDB's client has no "TLS, unverified, but required": under require it uses TLS whenever the
    server offers it, which Backstop's own connection to the same server has just required.
    """
    mode = db.tls_mode
    if flavor == "mysql":
        if mode == "off":
            return ["--ssl-mode=DISABLED"]
        if mode == "require":
            return ["--ssl-mode=REQUIRED"]
        return ["--ssl-mode=VERIFY_IDENTITY", f"--ssl-ca={ca}"]
    if mode == "off":
        return ["--skip-ssl"]
    if mode == "require":
        return ["--ssl", "--skip-ssl-verify-server-cert"]
    return ["--ssl", f"--ssl-ca={ca}", "--ssl-verify-server-cert"]
