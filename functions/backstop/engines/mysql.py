"""MySQL and MariaDB: a logical dump with ``mariadb-dump`` (or ``mysqldump``) in one consistent transaction.

The dump tool runs with ``--single-transaction``: every InnoDB table is read in one consistent
snapshot while writers go on committing. Other engines (MyISAM, Aria, MEMORY) are not transactional,
so each such table is named in the manifest's warnings.

The tool's stdout is the snapshot's raw stream, read in bounded memory. A dump that dies, exits
non-zero or lacks the ``-- Dump completed`` trailer raises SourceError from ``read()`` before the
stream reports its end, so the upload is aborted and no manifest is written.

Row counts are exact for the dump itself, not for the database at some other instant: a COUNT(*)
in a separate transaction would see rows committed after the dump's snapshot was taken. Instead
``DumpScanner`` counts the row tuples of every ``INSERT INTO `t` VALUES (...),(...);`` statement as
the bytes stream past. It follows the dump's layout: data statements are recognised only at the
start of a line inside a table's ``-- Dumping data for table `t``` section (so trigger, event and
routine bodies, which come elsewhere, are never counted), and inside a statement it skips string
literals with their backslash escapes and doubled quotes, so a value holding ``),(``, ``;``, quotes
or newlines counts as one value. ``--hex-blob`` keeps binary data out of string literals. The same
scanner recounts a downloaded artifact for ``verify``.

The password reaches the tool only through a 0600 option file in the run directory, named by
``--defaults-extra-file`` (the first argument, as the tool requires); the child's environment
carries neither ``MYSQL_PWD`` nor the variable the password came from. Identity and statistics are
read through PyMySQL, with the password passed in process.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pymysql

from backstop.config import MysqlDatabase
from backstop.credentials import mysql_option_file, private_file, resolve_password
from backstop.engines.base import Inspection, compare_with_manifest
from backstop.errors import IntegrityError, SourceError
from backstop.manifest import IntegrityCheck, Manifest, TableStat

log = logging.getLogger(__name__)

CHECK = "dump-trailer"
TRAILER = b"-- Dump completed"
DUMP_TOOLS = ("mariadb-dump", "mysqldump")
DUMP_OPTIONS = (
    "--single-transaction",
    "--routines",
    "--triggers",
    "--events",
    "--hex-blob",
    "--default-character-set=utf8mb4",
    "--no-tablespaces",  # MySQL 8 otherwise needs the PROCESS privilege; nothing restorable is lost
    "--protocol=TCP",  # like PyMySQL: "localhost" must not silently mean a socket with other credentials
)
CHUNK = 1024 * 1024
_DATA_SECTION = b"-- Dumping data for table "
_LINE_LIMIT = 4096  # top-level lines are classified by their start; a longer one is kept truncated
_SPECIAL = re.compile(rb"[();']")
_STRING_BODY = re.compile(rb"[^'\\]*+(?:\\.[^'\\]*+)*+", re.DOTALL)
_QUOTE, _BACKSLASH, _OPEN, _CLOSE = ord("'"), ord("\\"), ord("("), ord(")")
_ACCESS_DENIED = 1045


def quote_identifier(name: str) -> str:
    """A MySQL identifier in backticks, as the dump tool writes it."""
    return "`" + name.replace("`", "``") + "`"


def _parse_identifier(text: bytes) -> str | None:
    """The backtick-quoted identifier at the start of ``text``, or None."""
    match = re.match(rb"`((?:[^`]|``)*)`", text)
    return match.group(1).replace(b"``", b"`").decode("utf-8", errors="replace") if match else None


class DumpScanner:
    """Counts the row tuples per table of a dump's data statements, and whether it ends with the trailer.

    Feed it the dump in chunks of any size; memory stays bounded by one top-level line start and a
    one-byte carry between chunks.
    """

    _LINE, _VALUES, _STRING = range(3)

    def __init__(self) -> None:
        self.tables: dict[str, int] = {}
        self.trailer_at_end = False
        self.unterminated: str | None = None  # a data statement the stream ended inside
        self._state = self._LINE
        self._line = bytearray()
        self._section: str | None = None
        self._prefix = b""
        self._depth = 0
        self._carry = b""

    def feed(self, data: bytes) -> None:
        buf = self._carry + data if self._carry else data
        self._carry = b""
        pos, end = 0, len(buf)
        while pos < end:
            if self._state == self._LINE:
                pos = self._scan_line(buf, pos)
            elif self._state == self._VALUES:
                match = _SPECIAL.search(buf, pos)
                if match is None:
                    break
                pos = match.end()
                self._values_token(buf[match.start()])
            else:
                pos = self._scan_string(buf, pos)

    def _scan_line(self, buf: bytes, pos: int) -> int:
        newline = buf.find(b"\n", pos)
        stop = len(buf) if newline < 0 else newline
        if self._section is not None:
            start = bytes(self._line[: len(self._prefix)]) + buf[pos : pos + len(self._prefix)]
            if start.startswith(self._prefix):
                consumed = len(self._prefix) - len(self._line)
                self._line.clear()
                self._state, self._depth = self._VALUES, 0
                self.trailer_at_end = False
                return pos + consumed
            if newline < 0 and len(start) < len(self._prefix) and self._prefix.startswith(start):
                self._line += buf[pos:stop]  # maybe the start of a data statement: wait for more
                return stop
        if len(self._line) < _LINE_LIMIT:
            self._line += buf[pos : min(stop, pos + _LINE_LIMIT - len(self._line))]
        if newline < 0:
            return stop
        self._end_line(bytes(self._line))
        self._line.clear()
        return newline + 1

    def _end_line(self, line: bytes) -> None:
        line = line.rstrip(b"\r")
        if line.strip():
            self.trailer_at_end = line.startswith(TRAILER)
        if line.startswith(_DATA_SECTION):
            name = _parse_identifier(line[len(_DATA_SECTION) :])
            if name is not None:
                self._section = name
                self.tables.setdefault(name, 0)
                self._prefix = b"INSERT INTO " + quote_identifier(name).encode() + b" VALUES"
        elif self._section is not None and line.startswith((b"UNLOCK TABLES", b"-- ", b"DELIMITER")):
            self._section = None

    def _values_token(self, token: int) -> None:
        if token == _QUOTE:
            self._state = self._STRING
        elif token == _OPEN:
            if self._depth == 0 and self._section is not None:
                self.tables[self._section] += 1
            self._depth += 1
        elif token == _CLOSE:
            self._depth -= 1
        elif self._depth == 0:  # the statement's terminating ';'
            self._state = self._LINE

    def _scan_string(self, buf: bytes, pos: int) -> int:
        match = _STRING_BODY.match(buf, pos)
        pos = match.end() if match else pos
        if pos >= len(buf):
            return pos
        if buf[pos] == _BACKSLASH or pos + 1 == len(buf):  # an escape or a quote split across chunks
            self._carry = buf[pos:]
            return len(buf)
        if buf[pos + 1] == _QUOTE:  # '' is a quote inside the string
            return pos + 2
        self._state = self._VALUES
        return pos + 1

    def finish(self) -> None:
        """The stream ended: classify its last line and note a data statement left open."""
        if self._carry == b"'" and self._state == self._STRING:
            self._state, self._carry = self._VALUES, b""
        if self._state != self._LINE:
            self.unterminated = self._section or "?"
        elif self._line:
            self._end_line(bytes(self._line))
            self._line.clear()

    def problem(self) -> str | None:
        """Why the scanned dump is not complete, or None."""
        if self.unterminated is not None:
            return f"the dump ends inside the data of table {self.unterminated}"
        if not self.trailer_at_end:
            return "the dump does not end with its '-- Dump completed' trailer"
        return None


def scan_file(path: Path) -> DumpScanner:
    """Scan a whole dump file in bounded memory."""
    scanner = DumpScanner()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            scanner.feed(chunk)
    scanner.finish()
    return scanner


@dataclass
class _Server:
    """What PyMySQL reported about the source before the dump started."""

    source: dict[str, str | int | None]
    base_tables: list[str]
    warnings: list[str] = field(default_factory=list)


def _scrub(text: str, password: str | None) -> str:
    return text.replace(password, "***") if password else text


def _read_server(db: MysqlDatabase, password: str | None) -> _Server:
    """Identity, version and base tables of the source; SourceError (without the password) if unreachable."""
    where = f"{db.user}@{db.host}:{db.port}/{db.dbname}"
    try:
        conn = pymysql.connect(
            host=db.host,
            port=db.port,
            user=db.user,
            password=password or "",
            database=db.dbname,
            connect_timeout=max(1, int(db.connect_timeout.total_seconds())),
            charset="utf8mb4",
        )
    except pymysql.MySQLError as exc:
        code = exc.args[0] if exc.args else None
        if code == _ACCESS_DENIED:
            hint = f" (check ${db.password_env})" if db.password_env else " (check its password secret)"
            raise SourceError(f"MySQL database {db.name} refused {where}: access denied{hint}.") from None
        reason = _scrub(str(exc.args[1] if len(exc.args) > 1 else exc), password)[:200]
        raise SourceError(f"MySQL database {db.name} cannot be reached as {where}: {reason}.") from None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION(), @@server_id, @@hostname")
            version, server_id, hostname = cur.fetchone() or ("?", None, None)
            source: dict[str, str | int | None] = {
                "host": db.host,
                "port": db.port,
                "dbname": db.dbname,
                "user": db.user,
                "server_version": str(version),
            }
            if "mariadb" in str(version).lower():
                # MariaDB has no server_uuid: the replication server id and the host name identify it.
                source["flavor"] = "mariadb"
                source["server_id@hostname"] = f"{server_id}@{hostname}"
            else:
                cur.execute("SELECT @@server_uuid")
                row = cur.fetchone()
                source["flavor"] = "mysql"
                source["server_uuid"] = str(row[0]) if row else None
            cur.execute(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                (db.dbname,),
            )
            tables = [(str(name), str(engine)) for name, engine in cur.fetchall()]
    except pymysql.MySQLError as exc:
        raise SourceError(
            f"MySQL database {db.name} cannot be described: {_scrub(str(exc), password)[:200]}."
        ) from None
    finally:
        conn.close()
    server = _Server(source=source, base_tables=[name for name, _ in tables])
    for name, engine in tables:
        if engine.lower() != "innodb":
            message = (
                f"table {name} uses {engine}, not InnoDB: --single-transaction does not make it consistent "
                "with the rest of the dump"
            )
            log.warning("%s: %s", db.name, message)
            server.warnings.append(message)
    return server


def _dump_tool() -> tuple[str, str]:
    """The dump tool's name and absolute path (mariadb-dump preferred)."""
    for name in DUMP_TOOLS:
        path = shutil.which(name)
        if path is not None:
            return name, path
    raise SourceError("Neither mariadb-dump nor mysqldump is installed; install the MariaDB or MySQL client.")


def _tool_version(path: str, env: dict[str, str]) -> str:
    result = subprocess.run([path, "--version"], capture_output=True, env=env, check=False, timeout=30)
    return " ".join(result.stdout.decode(errors="replace").split()) or "unknown"


def child_env(db: MysqlDatabase, password: str | None) -> dict[str, str]:
    """The environment of the dump tool: no MYSQL_PWD, no variable holding the password."""
    return {
        name: value
        for name, value in os.environ.items()
        # Equality, not containment: a short password would otherwise strip PATH or HOME by accident.
        if name != "MYSQL_PWD" and name != db.password_env and not (password and value == password)
    }


class _DumpReader:
    """The dump tool's stdout; raises the dump's failure instead of a clean end of stream."""

    def __init__(self, snapshot: MysqlSnapshot, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        self._stdout = process.stdout
        self._snapshot = snapshot
        self._process = process

    def read(self, size: int = -1) -> bytes:
        data = self._stdout.read(size)
        if data:
            self._snapshot.scanner.feed(data)
            return data
        error = self._snapshot.conclude(self._process.wait())
        if error is not None:
            raise SourceError(error)
        return data

    def close(self) -> None:
        if self._process.poll() is None:  # abandoned mid-stream (the upload failed): stop the dump
            self._process.kill()
        code = self._process.wait()
        self._stdout.close()
        self._snapshot.conclude(code, abandoned=True)


class MysqlSnapshot:
    """One run of the dump tool, streamed; its row counts and check are known once the stream is read."""

    # The dump is checked as it streams (row counts and the trailer).
    cpu_bound_check = False

    def __init__(
        self,
        db: MysqlDatabase,
        args: list[str],
        env: dict[str, str],
        run_dir: Path,
        server: _Server,
        password: str | None,
    ) -> None:
        self._db = db
        self._args = args
        self._env = env
        self._stderr = run_dir / "dump.stderr"
        self._base_tables = server.base_tables
        self._password = password
        self.source = server.source
        self.tools: dict[str, str] = {}
        self.warnings = list(server.warnings)
        self.scanner = DumpScanner()
        self._opened = False
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._error: str | None = None

    def open(self) -> AbstractContextManager[BinaryIO]:
        return self._stream()

    @contextmanager
    def _stream(self) -> Iterator[BinaryIO]:
        with self._stderr.open("wb") as stderr:
            process = subprocess.Popen(  # fixed arguments and a resolved tool path, no shell
                self._args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=self._env
            )
        self._opened = True
        reader = _DumpReader(self, process)
        try:
            yield reader  # type: ignore[misc]  # a minimal binary reader: read() and close()
        finally:
            reader.close()
            self._stderr.unlink(missing_ok=True)

    def conclude(self, code: int, *, abandoned: bool = False) -> str | None:
        """Record how the dump ended (once) and return why it failed, or None."""
        with self._lock:
            if self._done.is_set():
                return self._error
            self.scanner.finish()
            if abandoned and code != 0:
                problem: str | None = "the dump was stopped before it was read to the end"
            elif code != 0:
                problem = (
                    f"{Path(self._args[0]).name} exited with code {code}"
                    if code > 0
                    else (f"{Path(self._args[0]).name} was killed by signal {-code}")
                )
            else:
                problem = self.scanner.problem()
            if problem is not None:
                excerpt = self._stderr_excerpt()
                self._error = f"The dump of MySQL database {self._db.name} failed: {problem}" + (
                    f" ({excerpt})." if excerpt else "."
                )
                log.error("%s", self._error)
            else:
                for line in self._stderr_lines():
                    log.warning("%s: %s", self._db.name, line)
            self._done.set()
            return self._error

    def _stderr_lines(self) -> list[str]:
        try:
            with self._stderr.open("rb") as handle:
                handle.seek(max(0, self._stderr.stat().st_size - 4096))
                text = handle.read().decode("utf-8", errors="replace")
        except OSError:
            return []
        return [_scrub(line.strip(), self._password) for line in text.splitlines() if line.strip()]

    def _stderr_excerpt(self) -> str:
        excerpt = " / ".join(self._stderr_lines()[-2:])
        return excerpt if len(excerpt) <= 300 else excerpt[:297] + "..."

    def raw_size(self) -> int | None:
        return None

    def inspect(self) -> Inspection:
        """Wait for the end of the stream, then check exit code, trailer, and that every base table was dumped."""
        if not self._opened:
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail="the dump was not started"))
        self._done.wait()
        if self._error is not None:
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail=self._error))
        counted = self.scanner.tables
        missing = sorted(set(self._base_tables) - set(counted))
        if missing:
            detail = f"base tables missing from the dump: {', '.join(missing[:10])}"
            return Inspection(integrity=IntegrityCheck(check=CHECK, passed=False, detail=detail))
        tables = {name: TableStat(rows=rows, exact=True) for name, rows in sorted(counted.items())}
        total = sum(counted.values())
        return Inspection(
            integrity=IntegrityCheck(
                check=CHECK, passed=True, detail=f"trailer present, exit 0, {len(tables)} tables, {total} rows"
            ),
            tables=tables,
            stats={"tables": len(tables), "rows": total},
        )


class MysqlEngine:
    """Dumps and checks of one configured MySQL or MariaDB database (restores come later)."""

    name = "mysql"
    artifact = "sql"

    def __init__(self, db: MysqlDatabase) -> None:
        self._db = db

    def snapshot(self, run_dir: Path) -> AbstractContextManager[MysqlSnapshot]:
        return self._snapshot(run_dir)

    @contextmanager
    def _snapshot(self, run_dir: Path) -> Iterator[MysqlSnapshot]:
        db = self._db
        password = resolve_password(db)
        tool, path = _dump_tool()
        env = child_env(db, password)
        server = _read_server(db, password)
        with ExitStack() as stack:
            args = [path]
            if password is not None:
                options = stack.enter_context(private_file(run_dir, "client.cnf", mysql_option_file(db, password)))
                args.append(f"--defaults-extra-file={options}")  # must be the first option
            args += [*DUMP_OPTIONS, f"--host={db.host}", f"--port={db.port}", f"--user={db.user}", db.dbname]
            snapshot = MysqlSnapshot(db, args, env, run_dir, server, password)
            snapshot.tools = {tool: _tool_version(path, env)}
            yield snapshot

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        """Require the trailer, then recount every table's tuples and compare them with the manifest."""
        scanner = scan_file(raw)
        problem = scanner.problem()
        if problem is not None:
            raise IntegrityError(f"Backup {manifest.backup_id} is not a complete dump: {problem} (truncated?).")
        found = Inspection(
            integrity=IntegrityCheck(check=CHECK, passed=True, detail=f"trailer present, {len(scanner.tables)} tables"),
            tables={name: TableStat(rows=rows) for name, rows in scanner.tables.items()},
            stats={"tables": len(scanner.tables), "rows": sum(scanner.tables.values())},
        )
        compare_with_manifest(found, manifest, f"Backup {manifest.backup_id}")
        return found
