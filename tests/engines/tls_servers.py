"""Servers for the TLS tests: a self-made CA, and private TLS-only PostgreSQL and MariaDB instances using it.

Each instance runs on a free port with a temporary data directory, accepts TLS connections only (PostgreSQL:
``hostssl`` lines alone; MariaDB: ``require_secure_transport``), with a certificate for ``127.0.0.1`` and
``localhost`` signed by ``Certificates.ca``, and is stopped and removed afterwards. The fixtures are
session-scoped and the tests that use them share an xdist group, so each instance starts once (about a
second each). Also here: impostors, plain TCP servers that speak just enough of each protocol to ask for
the password in clear and record what they are sent.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PG_BIN = Path("/usr/lib/postgresql/15/bin")
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
PASSWORD = "Tls-pa55word-e91f3c"  # the sentinel searched for in argv, environments and what impostors receive
MYSQL_USER = "backstop"


@dataclass(frozen=True)
class Certificates:
    """PEM files: the CA that signed the servers' certificate, another CA that signed nothing of theirs, and the
    servers' certificate (for 127.0.0.1 and localhost) and key."""

    ca: Path
    other_ca: Path
    cert: Path
    key: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _self_signed_ca(common: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(_name(common))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),  # keyCertSign, cRLSign
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_certificates(directory: Path) -> Certificates:
    """A CA, an unrelated CA and a server certificate signed by the first, written into ``directory``."""
    ca_key, ca = _self_signed_ca("Backstop test CA")
    _, other = _self_signed_ca("Backstop impostor CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(
        ca=directory / "ca.pem",
        other_ca=directory / "other-ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.other_ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    files.key.chmod(0o600)
    return files


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _private_dir(prefix: str, owner: str) -> Path:
    """A directory the server's account owns (the servers refuse to run as root; pytest's dirs are root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    if os.geteuid() == 0:
        shutil.chown(base, owner, owner)
    return base


def _as(owner: str) -> list[str]:
    return ["runuser", "-u", owner, "--"] if os.geteuid() == 0 else []


def _give(path: Path, owner: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, owner, owner)


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("tls-certificates"))


# -- PostgreSQL ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsPostgres:
    """A running TLS-only PostgreSQL 15 (superuser ``postgres`` with ``PASSWORD``, scram-sha-256)."""

    port: int
    certificates: Certificates

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            password=PASSWORD,
            dbname=dbname,
            sslmode="verify-full",
            sslrootcert=str(self.certificates.ca),
            autocommit=True,
        )


@pytest.fixture(scope="session")
def tls_postgres(certificates: Certificates) -> Iterator[TlsPostgres]:
    initdb = PG_BIN / "initdb"
    if not initdb.exists():
        pytest.skip(f"initdb is not available at {initdb}: no private TLS PostgreSQL can be started")
    base = _private_dir("backstop-pgtls-", "postgres")
    data, pwfile = base / "data", base / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    _give(pwfile, "postgres")
    for source, name in ((certificates.cert, "server.pem"), (certificates.key, "server.key")):
        shutil.copy(source, base / name)
        (base / name).chmod(0o600)
        _give(base / name, "postgres")
    subprocess.run(
        [
            *_as("postgres"),
            str(initdb),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=scram-sha-256",
            f"--pwfile={pwfile}",
            "--no-sync",
        ],
        check=True,
        capture_output=True,
    )
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all all reject\n"
    )
    port = free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={base} -c fsync=off -c ssl=on "
        f"-c ssl_cert_file={base / 'server.pem'} -c ssl_key_file={base / 'server.key'}"
    )
    pg_ctl = str(PG_BIN / "pg_ctl")
    subprocess.run(
        [*_as("postgres"), pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        yield TlsPostgres(port=port, certificates=certificates)
    finally:
        subprocess.run(
            [*_as("postgres"), pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"], capture_output=True
        )
        shutil.rmtree(base, ignore_errors=True)


# -- MariaDB -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsMariadb:
    """A running TLS-only MariaDB (``require_secure_transport``), with user ``MYSQL_USER`` and ``PASSWORD``."""

    port: int
    socket: Path
    certificates: Certificates

    def admin(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        """root over the server's Unix socket (a socket counts as secure transport)."""
        return pymysql.connect(unix_socket=str(self.socket), user="root", database=database, autocommit=True)


@pytest.fixture(scope="session")
def tls_mariadb(certificates: Certificates) -> Iterator[TlsMariadb]:
    install = shutil.which("mariadb-install-db")
    if install is None or not Path(MARIADBD).exists():
        pytest.skip("mariadb-install-db or mariadbd is not installed: no private TLS MariaDB can be started")
    base = _private_dir("backstop-mariadbtls-", "mysql")
    for source in (certificates.ca, certificates.cert, certificates.key):
        shutil.copy(source, base / source.name)
        _give(base / source.name, "mysql")
    data, sock, log = base / "data", base / "mysqld.sock", base / "error.log"
    subprocess.run(
        [
            install,
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            MARIADBD,
            "--no-defaults",
            f"--datadir={data}",
            "--user=mysql",
            f"--port={port}",
            "--bind-address=127.0.0.1",
            f"--socket={sock}",
            f"--pid-file={base / 'mysqld.pid'}",
            f"--log-error={log}",
            f"--ssl-ca={base / 'ca.pem'}",
            f"--ssl-cert={base / 'server.pem'}",
            f"--ssl-key={base / 'server.key'}",
            "--require-secure-transport=ON",
            "--skip-log-bin",
            "--innodb-buffer-pool-size=32M",
            "--innodb-flush-log-at-trx-commit=0",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    instance = TlsMariadb(port=port, socket=sock, certificates=certificates)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with instance.admin() as conn, conn.cursor() as cur:
                    cur.execute(f"CREATE USER '{MYSQL_USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'")
                    cur.execute(f"GRANT ALL ON *.* TO '{MYSQL_USER}'@'127.0.0.1'")
                break
            except pymysql.err.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the TLS MariaDB did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.1)
        yield instance
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(base, ignore_errors=True)


# -- impostors ------------------------------------------------------------------------------------


@dataclass
class Impostor:
    """A plain TCP server on 127.0.0.1 that asks every client for its password in clear and keeps what it gets."""

    port: int
    received: list[bytes] = field(default_factory=list)
    asked_for_tls: bool = False

    def got(self, secret: str) -> bool:
        return any(secret.encode() in chunk for chunk in self.received)


def _serve(impostor: Impostor, answer: Any) -> Iterator[Impostor]:
    listener = socket.create_server(("127.0.0.1", impostor.port))
    listener.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                with contextlib.suppress(OSError, struct.error):
                    answer(impostor, conn)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield impostor
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def _read(conn: socket.socket, size: int, impostor: Impostor) -> bytes:
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            raise OSError("closed")
        data += chunk
    impostor.received.append(data)
    return data


def postgres_impostor(method: int) -> Iterator[Impostor]:
    """PostgreSQL that refuses TLS and GSSAPI and asks for the password in clear (``method`` 3) or as md5 (5)."""

    def answer(impostor: Impostor, conn: socket.socket) -> None:
        while True:
            length, code = struct.unpack("!ii", _read(conn, 8, impostor))
            if code in (80877103, 80877104):  # SSLRequest, GSSENCRequest
                impostor.asked_for_tls = impostor.asked_for_tls or code == 80877103
                conn.sendall(b"N")
                continue
            _read(conn, length - 8, impostor)  # the rest of the startup message
            break
        extra = b"salt" if method == 5 else b""  # md5 sends its salt
        conn.sendall(b"R" + struct.pack("!ii", 8 + len(extra), method) + extra)
        kind = _read(conn, 1, impostor)
        if kind == b"p":
            (length,) = struct.unpack("!i", _read(conn, 4, impostor))
            _read(conn, length - 4, impostor)

    yield from _serve(Impostor(port=free_port()), answer)


def _mysql_packet(sequence: int, payload: bytes) -> bytes:
    return struct.pack("<I", len(payload))[:3] + bytes([sequence]) + payload


def mysql_impostor(plugin: str) -> Iterator[Impostor]:
    """MySQL without TLS whose greeting names ``plugin``; it then asks for the password in clear
    (``mysql_clear_password``) or, for ``caching_sha2_password``, for a full authentication with its own RSA key."""

    def read_packet(impostor: Impostor, conn: socket.socket) -> bytes:
        header = _read(conn, 4, impostor)
        return _read(conn, int.from_bytes(header[:3], "little"), impostor)

    def answer(impostor: Impostor, conn: socket.socket) -> None:
        capabilities = 0x1 | 0x8 | 0x200 | 0x8000 | 0x80000 | 0x200000  # no CLIENT_SSL (0x800)
        salt = b"abcdefghijklmnopqrst"
        greeting = (
            b"\x0a8.0.99-impostor\x00"
            + struct.pack("<I", 7)
            + salt[:8]
            + b"\x00"
            + struct.pack("<H", capabilities & 0xFFFF)
            + b"\x21"
            + struct.pack("<H", 2)
            + struct.pack("<H", capabilities >> 16)
            + bytes([21])
            + b"\x00" * 10
            + salt[8:]
            + b"\x00"
            + plugin.encode()
            + b"\x00"
        )
        conn.sendall(_mysql_packet(0, greeting))
        read_packet(impostor, conn)  # the handshake response
        if plugin == "caching_sha2_password":
            conn.sendall(_mysql_packet(2, b"\x01\x04"))  # perform full authentication
            read_packet(impostor, conn)  # the request for the server's key (an unverified client asks for it)
            key = b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"
            conn.sendall(_mysql_packet(4, b"\x01" + key))
        else:
            conn.sendall(_mysql_packet(2, b"\xfe" + plugin.encode() + b"\x00"))  # switch to it
        read_packet(impostor, conn)

    yield from _serve(Impostor(port=free_port()), answer)
