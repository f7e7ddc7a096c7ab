"""PostgreSQL: ``pg_dump --format=custom`` inside one exported snapshot, checked by ``pg_restore`` as it streams.

Backstop opens a REPEATABLE READ transaction, exports its snapshot and hands it to pg_dump
(``--snapshot``), keeping the transaction open for the whole dump: the row counts taken in that
transaction describe exactly the rows in the archive. pg_dump writes the archive uncompressed;
Backstop's pipeline compresses it. Its stdout is streamed as the raw snapshot and teed into two
``pg_restore`` processes: ``--file=/dev/null`` reads every block (a truncated or torn archive fails
it) and ``--list`` counts the table of contents. A pg_dump that dies or exits non-zero is raised by
the reader before it reports end of stream, so a partial archive is never committed.

Every connection, psycopg's and the tools', carries the database's TLS (``sslmode``, ``sslrootcert``) and
what the server may ask for (``require_auth``) in its connection string (``engines/tls.py``).

The password reaches psycopg in-process and the tools that connect (pg_dump, pg_restore into a
server) through a 0600 ``.pgpass`` in the run directory (``PGPASSFILE``); it is never in argv or in a
child's environment: those tools get ours without ``PGPASSWORD``, the database's ``password_env`` and
any variable holding the password, and the tools that only read an archive get nothing but ``PATH``,
the locale and the time zone.

A restore into a server keeps owners: the fresh database is created owned by the archive's database
owner and pg_restore sets every object's recorded owner, so the restore role needs no superuser, only
CREATEDB and membership in the owning roles (docs/runbooks/restore.md); a role that does not exist,
or that it cannot act as, is refused before anything is created.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import TupleRow

from backstop.adapters.secrets import pgpass_line, private_file, resolve_password
from backstop.config import PostgresDatabase
from backstop.engines.base import Inspection
from backstop.engines.pg_script import script_restore
from backstop.engines.sqlite import MIGRATION_TABLES
from backstop.engines.tls import (
    auth_restricted,
    libpq_settings,
    psycopg_restricts_auth,
    tls_hint,
    tool_restricts_auth,
    trust_file,
)
from backstop.errors import IntegrityError, RestoreError, SourceError, ValidationError
from backstop.manifest import IntegrityCheck, Manifest, TableStat

_CHECK = "pg_restore"
# 1 MiB pipes between pg_dump, Backstop and pg_restore: fewer, larger reads and writes (64 KiB by default).
PIPE_SIZE = 1024 * 1024
DUMP_FORMAT = "custom, uncompressed (zstd by backstop)"
_EXIT_WAIT_SECONDS = 60.0
_EXCERPT_CHARS = 300
_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")

# Ordinary tables of the database's own schemas (not the catalogs, not extension members), with the
# planner's estimate of their rows (-1 when never analysed).
_TABLES = """
SELECT n.nspname, c.relname, c.reltuples
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (
    SELECT 1 FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY n.nspname, c.relname
"""

_COLUMN_EXISTS = """
SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s AND NOT a.attisdropped AND a.attnum > 0
"""


def server_version_num(conn: psycopg.Connection[TupleRow]) -> int:
    """The server's ``server_version_num`` (150020 for 15.20); a function of its own so tests can simulate others."""
    row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    return int(str(row[0])) if row else 0


def tool_path(tool: str) -> str:
    """The full path of a PostgreSQL client tool on PATH; SourceError when it is missing."""
    path = shutil.which(tool)
    if path is None:
        raise SourceError(f"{tool} is not installed or not on PATH; install the PostgreSQL client tools.")
    return path


def tool_version(tool: str) -> tuple[int, str]:
    """Major version and version text of a PostgreSQL client tool on PATH (``pg_dump``, ``pg_restore``)."""
    path = tool_path(tool)
    try:
        output = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=30, check=True, env=reader_env()
        ).stdout
    except (OSError, subprocess.SubprocessError):
        raise SourceError(f"{tool} --version failed; check the PostgreSQL client installation.") from None
    match = _VERSION.search(output)
    if match is None:
        raise SourceError(f"{tool} --version printed an unrecognised version ({output.strip()[:80]!r}).")
    text = match.group(1) + (f".{match.group(2)}" if match.group(2) else "")
    return int(match.group(1)), text


def child_env(db: PostgresDatabase, pgpass: Path | None, password: str | None) -> dict[str, str]:
    """The environment of a PostgreSQL tool that connects to ``db``: ours without the password under any name
    (PGPASSWORD, the database's ``password_env``, any variable equal to it), with our ``.pgpass`` when there is one.

    The rest is kept on purpose: libpq reads its TLS and service settings (``PGSSLMODE``, ``PGSSLROOTCERT`` ...)
    from the environment.
    """
    hidden = {"PGPASSWORD", db.password_env}
    # Equality, not containment: a short password would otherwise strip PATH or HOME by accident.
    env = {k: v for k, v in os.environ.items() if k not in hidden and not (password and v == password)}
    if pgpass is not None:
        env["PGPASSFILE"] = str(pgpass)
    return env


_READER_ENV = re.compile(r"PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|TMPDIR")


def reader_env() -> dict[str, str]:
    """The environment of a PostgreSQL tool that connects to nothing (``--version``, ``pg_restore`` reading an
    archive): ``PATH``, the locale and the time zone, and no secret of any kind."""
    return {k: v for k, v in os.environ.items() if _READER_ENV.fullmatch(k)}


def _excerpt(path: Path, secret: str | None) -> str:
    """The last lines of a tool's stderr file, short and with the password (should it appear) masked."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "no error output"
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    excerpt = " | ".join(lines[-4:]) or "no error output"
    if secret:
        excerpt = excerpt.replace(secret, "***")
    return excerpt if len(excerpt) <= _EXCERPT_CHARS else "..." + excerpt[-_EXCERPT_CHARS:]


def _exit_text(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with status {code}"


def _count_toc(listing: Path) -> int:
    """Entries in a ``pg_restore --list`` output (comment lines start with ';')."""
    with listing.open(encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip() and not line.startswith(";"))


def _wait(process: subprocess.Popen[bytes]) -> int:
    try:
        return process.wait(timeout=_EXIT_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


class _Pipes:
    """The standard inputs of ``pg_restore`` processes, each written every chunk of an archive as it streams."""

    def __init__(self, pipes: list[IO[bytes]]) -> None:
        self._open = pipes

    def feed(self, data: bytes) -> None:
        for pipe in list(self._open):
            try:
                pipe.write(data)
            except (OSError, ValueError):
                # --list stops reading after the table of contents; a reader that quit early for
                # another reason fails through its exit status.
                self._open.remove(pipe)
                self._close(pipe)

    def finish(self) -> None:
        for pipe in self._open:
            self._close(pipe)
        self._open = []

    @staticmethod
    def _close(pipe: IO[bytes]) -> None:
        with suppress(OSError):  # a reader that already quit: its exit status tells
            pipe.close()


class _RestoreCheck:
    """``pg_restore --file=/dev/null`` and ``pg_restore --list`` reading a copy of the archive as it streams."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self._run_dir = run_dir
        self.listing = run_dir / "pg_restore.list"
        self.full_err = run_dir / "pg_restore-read.stderr"
        self.list_err = run_dir / "pg_restore-list.stderr"
        with self.full_err.open("wb") as err:
            self.full = subprocess.Popen(
                [tool_path("pg_restore"), "--format=custom", "--file=/dev/null"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                pipesize=PIPE_SIZE,
                stderr=err,
                env=env,
            )
        with self.list_err.open("wb") as err, self.listing.open("wb") as out:
            self.lister = subprocess.Popen(
                [tool_path("pg_restore"), "--format=custom", "--list"],
                stdin=subprocess.PIPE,
                stdout=out,
                pipesize=PIPE_SIZE,
                stderr=err,
                env=env,
            )
        self._pipes = _Pipes([p.stdin for p in (self.full, self.lister) if p.stdin is not None])

    def feed(self, data: bytes) -> None:
        self._pipes.feed(data)

    def finish(self) -> None:
        self._pipes.finish()

    def kill(self) -> None:
        self.finish()
        for process in (self.full, self.lister):
            if process.poll() is None:
                process.kill()

    def result(self) -> IntegrityCheck:
        full, listed = _wait(self.full), _wait(self.lister)
        if full != 0:
            return IntegrityCheck(
                check=_CHECK, passed=False, detail=f"full read {_exit_text(full)}: {_excerpt(self.full_err, None)}"
            )
        if listed != 0:
            return IntegrityCheck(
                check=_CHECK, passed=False, detail=f"--list {_exit_text(listed)}: {_excerpt(self.list_err, None)}"
            )
        entries = _count_toc(self.listing)
        return IntegrityCheck(check=_CHECK, passed=True, detail=f"{entries} TOC entries, every data block read")


class _DumpReader:
    """pg_dump's stdout, teed into the restore check; raises pg_dump's failure instead of a clean end of stream."""

    def __init__(self, snapshot: PostgresSnapshot, dump: subprocess.Popen[bytes], check: _RestoreCheck) -> None:
        assert dump.stdout is not None
        self._snapshot = snapshot
        self._dump = dump
        self._stdout = dump.stdout
        self._check = check

    def read(self, size: int = -1) -> bytes:
        data = self._stdout.read(size)
        if data:
            self._check.feed(data)
            return data
        self._snapshot.finish_dump(self._dump)
        self._check.finish()
        return data

    def close(self) -> None:
        self._stdout.close()


class PostgresSnapshot:
    """One exported snapshot of a database, dumped by pg_dump while the exporting transaction stays open."""

    # The checks are pg_restore processes fed by the stream itself.
    cpu_bound_check = False

    def __init__(
        self,
        db: PostgresDatabase,
        conn: psycopg.Connection[TupleRow],
        snapshot_id: str,
        run_dir: Path,
        pgpass: Path | None,
        password: str | None,
        libpq: dict[str, str],
    ) -> None:
        self._db = db
        self._conn = conn
        self._snapshot_id = snapshot_id
        self._run_dir = run_dir
        self._pgpass = pgpass
        self._password = password
        self._libpq = libpq
        self.source: dict[str, str | int | None] = {}
        self.tools: dict[str, str] = {}
        self.warnings: list[str] = []
        self._check: _RestoreCheck | None = None
        self._dump_stderr = run_dir / "pg_dump.stderr"

    def _dump_command(self) -> list[str]:
        conninfo = make_conninfo(
            host=self._db.host,
            port=str(self._db.port),
            dbname=self._db.dbname,
            user=self._db.user,
            connect_timeout=str(max(2, int(self._db.connect_timeout.total_seconds()))),
            application_name="backstop",
            **self._libpq,
        )
        lock_ms = max(1, int(self._db.lock_wait_timeout.total_seconds() * 1000))
        return [
            tool_path("pg_dump"),
            "--format=custom",
            "--compress=0",
            f"--snapshot={self._snapshot_id}",
            f"--lock-wait-timeout={lock_ms}",
            "--no-password",
            f"--dbname={conninfo}",
        ]

    @contextmanager
    def _stream(self) -> Iterator[BinaryIO]:
        env = child_env(self._db, self._pgpass, self._password)
        check = _RestoreCheck(self._run_dir, reader_env())
        self._check = check
        with self._dump_stderr.open("wb") as err:
            try:
                dump = subprocess.Popen(
                    self._dump_command(),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    env=env,
                    pipesize=PIPE_SIZE,
                )
            except OSError as exc:
                check.kill()
                raise SourceError(f"pg_dump cannot be started for database {self._db.name}: {exc.strerror}.") from None
        reader = _DumpReader(self, dump, check)
        completed = False
        try:
            yield reader  # type: ignore[misc]  # a minimal binary reader: read() and close()
            completed = True
        finally:
            if not completed:
                # The stream was abandoned (pg_dump failed, the upload failed): stop everything so the
                # concurrent check returns at once instead of waiting for input that will never come.
                if dump.poll() is None:
                    dump.kill()
                check.kill()
                with suppress(psycopg.Error):
                    self._conn.cancel_safe(timeout=5)
            reader.close()
            _wait(dump)
            check.finish()

    def finish_dump(self, dump: subprocess.Popen[bytes]) -> None:
        """Called at pg_dump's end of output: SourceError unless it exited 0."""
        code = _wait(dump)
        if code != 0:
            raise SourceError(
                f"pg_dump of database {self._db.name} {_exit_text(code)}: "
                f"{_excerpt(self._dump_stderr, self._password)}{self._lock_hint()}"
            )
        warnings = [
            line.strip() for line in self._dump_stderr.read_text(errors="replace").splitlines() if "warning" in line
        ]
        self.warnings.extend(w.replace(self._password, "***") if self._password else w for w in warnings)

    def _lock_hint(self) -> str:
        text = self._dump_stderr.read_text(errors="replace").lower()
        if "lock" in text or "statement timeout" in text:
            return (
                f" (a table stayed locked by another session for longer than lock_wait_timeout "
                f"{self._db.lock_wait_timeout}; retry later or raise lock_wait_timeout)"
            )
        return "."

    def open(self) -> AbstractContextManager[BinaryIO]:
        return self._stream()

    def raw_size(self) -> int | None:
        return None

    def inspect(self) -> Inspection:
        """Row counts in the exported snapshot (while pg_dump runs), then the verdict of the restore check."""
        check = self._check
        if check is None:
            raise IntegrityError(f"Database {self._db.name} was not dumped.")
        try:
            tables = count_rows(self._conn, self._db.exact_count_limit)
            schema_version = _schema_version(self._conn, tables)
        except psycopg.Error as exc:
            raise SourceError(
                f"Row counts of database {self._db.name} failed: {_psycopg_message(exc, self._password)}"
                f"{' (a table is locked by another session past lock_wait_timeout)' if _is_lock_error(exc) else ''}."
            ) from None
        integrity = check.result()
        if integrity.passed:
            self.source["toc_entries"] = _count_toc(check.listing)
        return Inspection(integrity=integrity, tables=tables, schema_version=schema_version)


def _is_lock_error(exc: psycopg.Error) -> bool:
    return isinstance(exc, psycopg.errors.LockNotAvailable)


def _psycopg_message(exc: psycopg.Error, secret: str | None) -> str:
    """The server's primary message, else libpq's own explanation (its last line, e.g. 'FATAL: password
    authentication failed ...'), password masked. (A server error's last line can be the caret under its query.)"""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = exc.diag.message_primary or (lines[-1] if lines else type(exc).__name__)
    text = " ".join(text.split()).rstrip(".")
    if secret:
        text = text.replace(secret, "***")
    return text[:_EXCERPT_CHARS]


def count_rows(conn: psycopg.Connection[TupleRow], exact_limit: int) -> dict[str, TableStat]:
    """Rows per table (``schema.table``): exact below ``exact_limit`` estimated rows, else the planner's estimate."""
    tables: dict[str, TableStat] = {}
    for schema, name, estimate in conn.execute(_TABLES).fetchall():
        reltuples = float(str(estimate))
        qualified = f"{schema}.{name}"
        if reltuples < 0 or reltuples < exact_limit:  # -1: never analysed, so no estimate to trust
            query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(str(schema), str(name)))
            row = conn.execute(query).fetchone()
            tables[qualified] = TableStat(rows=int(str(row[0])) if row else 0, exact=True)
        else:
            tables[qualified] = TableStat(rows=int(reltuples), exact=False)
    return tables


def _schema_version(conn: psycopg.Connection[TupleRow], tables: dict[str, TableStat]) -> str | None:
    """``table:max(version)`` of the first known migrations table (public schema first), if any."""
    candidates = sorted(
        (q for q in tables if q.split(".", 1)[1] in MIGRATION_TABLES), key=lambda q: (not q.startswith("public."), q)
    )
    for qualified in candidates:
        schema, table = qualified.split(".", 1)
        column = MIGRATION_TABLES[table]
        if conn.execute(_COLUMN_EXISTS, (schema, table, column)).fetchone() is None:
            continue
        query = sql.SQL("SELECT max({}) FROM {}").format(sql.Identifier(column), sql.Identifier(schema, table))
        row = conn.execute(query).fetchone()
        if row and row[0] is not None:
            return f"{table}:{row[0]}"
    return None


class PostgresEngine:
    """Dumps and checks of one configured PostgreSQL database (restores into a server come later)."""

    name = "postgres"
    artifact = "pgdump"

    def __init__(self, db: PostgresDatabase) -> None:
        self._db = db

    def snapshot(self, run_dir: Path) -> AbstractContextManager[PostgresSnapshot]:
        return self._snapshot(run_dir)

    @contextmanager
    def _snapshot(self, run_dir: Path) -> Iterator[PostgresSnapshot]:
        db = self._db
        password = resolve_password(db)
        dump_major, dump_version = tool_version("pg_dump")
        with ExitStack() as stack:
            ca = stack.enter_context(trust_file(db, run_dir, SourceError))
            own = auth_restricted(db, "psycopg", psycopg_restricts_auth(), password, SourceError)
            dump = auth_restricted(db, "pg_dump", tool_restricts_auth(tool_path("pg_dump")), password, SourceError)
            pgpass = None
            if password is not None:
                pgpass = stack.enter_context(private_file(run_dir, ".pgpass", pgpass_line(db, password)))
            conn = self._connect(password, libpq_settings(db, ca, restrict_auth=own))
            stack.callback(conn.close)
            source = self._identity(conn, dump_major, dump_version)
            warnings: list[str] = []
            if source["system_identifier"] is None:
                warnings.append(
                    f"system_identifier of {db.name} not recorded: user {db.user} may not call pg_control_system()."
                )
            try:
                conn.autocommit = False
                conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
                conn.read_only = True
                lock_ms = max(1, int(db.lock_wait_timeout.total_seconds() * 1000))
                conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(f"{lock_ms}ms")))
                conn.execute("SET LOCAL statement_timeout = 0")
                conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
                row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            except psycopg.Error as exc:
                raise SourceError(
                    f"PostgreSQL database {db.name} cannot export a snapshot: {_psycopg_message(exc, password)}."
                ) from None
            dump_libpq = libpq_settings(db, ca, restrict_auth=dump)
            snapshot = PostgresSnapshot(db, conn, str(row[0]) if row else "", run_dir, pgpass, password, dump_libpq)
            snapshot.source = source
            snapshot.tools = {"pg_dump": dump_version}
            snapshot.warnings = warnings
            try:
                yield snapshot
            finally:
                with suppress(psycopg.Error):
                    conn.rollback()

    def _connect(self, password: str | None, libpq: dict[str, str]) -> psycopg.Connection[TupleRow]:
        db = self._db
        try:
            return psycopg.connect(
                make_conninfo(**libpq),
                host=db.host,
                port=db.port,
                dbname=db.dbname,
                user=db.user,
                password=password,
                connect_timeout=max(2, int(db.connect_timeout.total_seconds())),
                application_name="backstop",
                autocommit=True,
            )
        except psycopg.Error as exc:
            reason = _psycopg_message(exc, password)
            raise SourceError(
                f"Cannot connect to PostgreSQL database {db.name} ({db.dbname} at {db.host}:{db.port} as {db.user}): "
                f"{reason}{tls_hint(db, reason)}."
            ) from None

    def _identity(
        self, conn: psycopg.Connection[TupleRow], dump_major: int, dump_version: str
    ) -> dict[str, str | int | None]:
        """Who the server is, refusing a server newer than pg_dump (its dump could silently miss objects)."""
        db = self._db
        try:
            version_num = server_version_num(conn)
            server_major = version_num // 10000
            if server_major > dump_major:
                raise SourceError(
                    f"PostgreSQL server of database {db.name} is version {server_major} ({version_num}) but pg_dump "
                    f"is version {dump_major} ({dump_version}); install pg_dump {server_major} or newer."
                )
            row = conn.execute("SHOW server_version").fetchone()
            server_version = str(row[0]) if row else ""
            try:
                ident = conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()
                system_identifier: str | None = str(ident[0]) if ident else None
            except psycopg.errors.InsufficientPrivilege:
                system_identifier = None
        except psycopg.Error as exc:
            raise SourceError(
                f"PostgreSQL database {db.name} cannot be queried: {_psycopg_message(exc, None)}."
            ) from None
        return {
            "host": db.host,
            "port": db.port,
            "dbname": db.dbname,
            "user": db.user,
            "server_version": server_version,
            "server_version_num": version_num,
            "system_identifier": system_identifier,
            "dump_format": DUMP_FORMAT,
        }

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        """``pg_restore --list`` and a full read of the archive file, side by side; IntegrityError naming a failure."""
        what = f"Backup {manifest.backup_id}"
        env = reader_env()
        paths = _CheckFiles(
            work_dir / "pg_restore.list", work_dir / "pg_restore-list.stderr", work_dir / "pg_restore-read.stderr"
        )
        processes: list[subprocess.Popen[bytes]] = []
        try:
            with ExitStack() as files:
                listing = files.enter_context(paths.listing.open("wb"))
                list_err = files.enter_context(paths.list_err.open("wb"))
                read_err = files.enter_context(paths.read_err.open("wb"))
                for args, out, err in ((["--list"], listing, list_err), (["--file=/dev/null"], None, read_err)):
                    processes.append(
                        subprocess.Popen(
                            [tool_path("pg_restore"), "--format=custom", *args, str(raw)],
                            stdin=subprocess.DEVNULL,
                            stdout=out or subprocess.DEVNULL,
                            stderr=err,
                            env=env,
                        )
                    )
        except OSError as exc:
            for process in processes:
                process.kill()
                process.wait()
            raise IntegrityError(f"{what} cannot be checked: pg_restore cannot run ({exc.strerror}).") from None
        lister, reader = processes
        return _artifact_verdict(what, manifest, lister.wait(), reader.wait(), paths)

    @contextmanager
    def artifact_check(self, manifest: Manifest, run_dir: Path) -> Iterator[ArtifactCheck]:
        """The checks of ``inspect_artifact``, reading the archive as it streams instead of from a file.

        Feed it every decompressed byte inside the block (``fetch_artifact(..., tee=check.feed)``, or
        the stream a restore loads); leaving the block cleanly takes the verdict (IntegrityError as
        from ``inspect_artifact``) and keeps it in ``check.inspection``. If the block fails, the
        ``pg_restore`` processes are stopped and the block's own error is raised. This spares a
        second read of the whole archive.
        """
        try:
            stream = _RestoreCheck(run_dir, reader_env())
        except OSError as exc:
            raise IntegrityError(
                f"Backup {manifest.backup_id} cannot be checked: pg_restore cannot run ({exc.strerror})."
            ) from None
        check = ArtifactCheck(stream)
        try:
            yield check
        except BaseException:
            stream.kill()
            _wait(stream.full)
            _wait(stream.lister)
            raise
        stream.finish()
        paths = _CheckFiles(stream.listing, stream.list_err, stream.full_err)
        check.inspection = _artifact_verdict(
            f"Backup {manifest.backup_id}", manifest, _wait(stream.lister), _wait(stream.full), paths
        )


class ArtifactCheck:
    """``pg_restore --list`` and a full read fed with an archive as it streams (see ``artifact_check``)."""

    def __init__(self, stream: _RestoreCheck) -> None:
        self._stream = stream
        self.inspection: Inspection | None = None

    def feed(self, data: bytes) -> None:
        self._stream.feed(data)


@dataclass(frozen=True)
class _CheckFiles:
    """Where the two pg_restore checks of an artifact leave the TOC listing and their stderr."""

    listing: Path
    list_err: Path
    read_err: Path


def _artifact_verdict(what: str, manifest: Manifest, listed: int, full: int, files: _CheckFiles) -> Inspection:
    """IntegrityError unless both pg_restore runs passed and the TOC has the entries the manifest records."""
    if listed != 0:
        excerpt = _excerpt(files.list_err, None)
        raise IntegrityError(f"{what} fails pg_restore --list ({_exit_text(listed)}): {excerpt}.")
    if full != 0:
        excerpt = _excerpt(files.read_err, None)
        raise IntegrityError(f"{what} fails pg_restore --file=/dev/null ({_exit_text(full)}): {excerpt}.")
    entries = _count_toc(files.listing)
    recorded = manifest.source.get("toc_entries")
    if isinstance(recorded, int) and recorded != entries:
        raise IntegrityError(f"{what} lists {entries} TOC entries, but the manifest records {recorded}.")
    return Inspection(
        integrity=IntegrityCheck(check=_CHECK, passed=True, detail=f"{entries} TOC entries, every data block read"),
        stats={"toc_entries": entries},
    )


# -- what a restore reads of an archive before it creates anything --------------------------------

_DATABASE_ENTRIES = (
    "DATABASE - ",
    "DATABASE PROPERTIES - ",
    "COMMENT - DATABASE ",
    "ACL - DATABASE ",
    "SECURITY LABEL - DATABASE ",
)
_LISTED = re.compile(r"(\d+); \d+ \d+ (.*)")
_LISTED_DBNAME = re.compile(r";\s+dbname: (.*)")
_IMPLICIT_OWNERS = frozenset({"", "pg_database_owner"})  # no entry, or whoever owns the database


@dataclass(frozen=True)
class ArchiveToc:
    """What a restore learns from an archive's table of contents before it creates anything.

    ``owners``: every role that owns an entry (the database included); ``database_owner``: the owner of the
    database itself; ``database_sql``: what pg_restore would run for the database's own entries (its settings,
    comment and grants), which it runs only when it creates the database itself (``--create``).
    """

    dbname: str
    database_owner: str | None
    owners: frozenset[str]
    database_sql: str


def _parse_listing(text: str) -> tuple[str, str | None, frozenset[str], list[str]]:
    """The dbname, the database's owner, every entry's owner and the lines of the database's own entries, from a
    ``pg_restore --create --list``. An entry's owner is its line's last word (role names with spaces are not told
    apart: pg_restore still refuses what the check let through)."""
    dbname = ""
    database_owner: str | None = None
    owners: set[str] = set()
    database_lines: list[str] = []
    for line in text.splitlines():
        header = _LISTED_DBNAME.fullmatch(line)
        if header:
            dbname = header.group(1)
            continue
        listed = _LISTED.fullmatch(line)
        if listed is None:
            continue
        entry = listed.group(2)
        owner = entry.rsplit(" ", 1)[-1] if " " in entry else ""
        owners.add(owner)
        if entry.startswith(_DATABASE_ENTRIES):
            database_lines.append(line)
            if entry.startswith("DATABASE - "):
                database_owner = owner
    return dbname, database_owner, frozenset(owners - _IMPLICIT_OWNERS), database_lines


class _ArchiveBeginning:
    """A ``pg_restore`` that connects to nothing, reading the beginning of an archive fed to it.

    The table of contents (every entry's definition and owner) comes first in a custom-format archive:
    what it asks of it, pg_restore prints without reading the data, and quits. ``feed`` then answers
    False, so the caller stops decompressing a long time before the end of a large archive.
    """

    def __init__(self, args: list[str], out: Path, err: Path) -> None:
        self._err = err
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self._process = subprocess.Popen(
                [tool_path("pg_restore"), "--format=custom", *args],
                stdin=subprocess.PIPE,
                stdout=stdout,
                stderr=stderr,
                env=reader_env(),
                pipesize=PIPE_SIZE,
            )
        assert self._process.stdin is not None
        self._stdin = self._process.stdin

    def feed(self, data: bytes) -> bool:
        if self._process.poll() is not None:
            return False
        try:
            self._stdin.write(data)
        except (OSError, ValueError):  # it read what it needed and quit
            return False
        return True

    def finish(self, what: str, damage: IntegrityError | None) -> None:
        """Wait for it; unless it exited 0, ``damage`` (what the stream's checks found) or an IntegrityError."""
        with suppress(OSError):
            self._stdin.close()
        code = _wait(self._process)
        if code != 0:
            if damage is not None:
                raise damage
            raise IntegrityError(
                f"{what} cannot be read by pg_restore ({_exit_text(code)}): {_excerpt(self._err, None)}."
            )

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
        with suppress(OSError):
            self._stdin.close()
        self._process.wait()


ArchiveFeeder = Callable[[Callable[[bytes], bool]], None]
"""Decompresses an archive into a reader until the reader answers False (or the archive ends)."""


def _read_beginning(feed_archive: ArchiveFeeder, args: list[str], out: Path, what: str) -> str:
    """What ``pg_restore <args>`` prints of the beginning of the archive.

    The archive's checksums are the load's to judge, whatever its size: a small archive is read to its
    end here, and a failed check of it counts here only if pg_restore could not read what it needed.
    """
    reader = _ArchiveBeginning(args, out, out.with_suffix(".stderr"))
    damage: IntegrityError | None = None
    try:
        feed_archive(reader.feed)
    except IntegrityError as exc:
        damage = exc
    except BaseException:
        reader.kill()
        raise
    reader.finish(what, damage)
    return out.read_text(encoding="utf-8", errors="replace")


def read_archive_toc(feed_archive: ArchiveFeeder, run_dir: Path, what: str) -> ArchiveToc:
    """The table of contents of the archive ``feed_archive`` decompresses, and the SQL of the database's own
    entries, from two reads of its beginning; IntegrityError if pg_restore cannot read it."""
    listing = _read_beginning(feed_archive, ["--create", "--list"], run_dir / "archive-toc.list", what)
    dbname, database_owner, owners, database_lines = _parse_listing(listing)
    database_sql = ""
    if database_lines:
        selection = run_dir / "archive-database.list"
        selection.write_text("\n".join(database_lines) + "\n", encoding="utf-8")
        database_sql = _read_beginning(
            feed_archive,
            ["--create", f"--use-list={selection}", "--file=-"],
            run_dir / "archive-database.sql",
            what,
        )
    return ArchiveToc(dbname=dbname, database_owner=database_owner, owners=owners, database_sql=database_sql)


# -- the database's own settings, comment and grants ------------------------------------------------

_SQL_TOKEN = re.compile(
    r"""(?P<space>\s+)
      |(?P<comment>--[^\n]*)
      |(?P<meta>^\\[^\n]*)
      |(?P<string>[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*')
      |(?P<ident>"(?:[^"]|"")+")
      |(?P<word>[A-Za-z_][A-Za-z0-9_$]*)
      |(?P<end>;)
      |(?P<other>.)""",
    re.VERBOSE | re.DOTALL | re.MULTILINE,
)
_ALTER_DATABASE_ACTIONS = frozenset({"SET", "RESET", "CONNECTION", "IS_TEMPLATE", "ALLOW_CONNECTIONS", "WITH"})
_SHOWN_STATEMENT = 160


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str

    @property
    def word(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    def names(self, name: str) -> bool:
        """Whether this token is the identifier ``name`` (unquoted names fold to lower case)."""
        if self.kind == "word":
            return self.text.lower() == name
        return self.kind == "ident" and self.text[1:-1].replace('""', '"') == name


def _statements(text: str) -> Iterator[list[_Token]]:
    """The SQL statements of ``text`` as tokens (spaces kept, comments and psql meta-commands dropped)."""
    statement: list[_Token] = []
    for match in _SQL_TOKEN.finditer(text):
        kind = str(match.lastgroup)
        if kind in ("comment", "meta"):
            continue
        if kind == "end":
            if any(t.kind != "space" for t in statement):
                yield statement
            statement = []
            continue
        statement.append(_Token(kind, match.group()))
    if any(t.kind != "space" for t in statement):
        yield statement  # unterminated: never recognised


@dataclass(frozen=True)
class DatabaseStatement:
    """A statement of the archive about its database, rewritten for the fresh one (``sql``), or why it is not run."""

    original: str
    sql: str | None
    note: str | None = None


def _database_position(tokens: list[_Token], dbname: str) -> int | None:
    """Index (in ``tokens``, spaces included) of the database name in a statement Backstop applies, else None.

    Recognised: ``ALTER DATABASE d <SET|RESET|CONNECTION|IS_TEMPLATE|ALLOW_CONNECTIONS|WITH> ...`` (not
    ``SET TABLESPACE``), ``COMMENT ON DATABASE d IS '...'``, ``SECURITY LABEL [FOR p] ON DATABASE d IS '...'``,
    ``ALTER ROLE r IN DATABASE d <SET|RESET> ...``, and ``GRANT|REVOKE <privileges> ON DATABASE d TO|FROM ...``
    where d is the archive's own database: each acts on that database alone.
    """
    solid = [(i, t) for i, t in enumerate(tokens) if t.kind != "space"]
    words = [t.word for _, t in solid]

    def named(at: int) -> bool:
        return at < len(solid) and solid[at][1].names(dbname)

    def followed_by(at: int, *expected: str) -> bool:
        return at + 1 < len(solid) and words[at + 1] in expected

    if words[:2] == ["ALTER", "DATABASE"] and named(2):
        action = words[3:5]
        if action[:1] and action[0] in _ALTER_DATABASE_ACTIONS and action != ["SET", "TABLESPACE"]:
            return solid[2][0]
        return None
    if words[:3] == ["COMMENT", "ON", "DATABASE"] and named(3):
        return solid[3][0] if words[4:5] == ["IS"] and len(solid) == 6 and solid[5][1].kind == "string" else None
    if words[:2] == ["SECURITY", "LABEL"] and "ON" in words:
        at = words.index("ON")
        if words[at + 1 : at + 2] == ["DATABASE"] and named(at + 2) and words[at + 3 : at + 4] == ["IS"]:
            return solid[at + 2][0] if len(solid) == at + 5 and solid[at + 4][1].kind == "string" else None
        return None
    if (
        words[:2] == ["ALTER", "ROLE"]
        and words[3:5] == ["IN", "DATABASE"]
        and named(5)
        and followed_by(5, "SET", "RESET")
    ):
        return solid[5][0]
    if words[:1] in (["GRANT"], ["REVOKE"]) and "ON" in words:
        at = words.index("ON")
        privileges = solid[1:at]
        if not all(t.kind == "word" or t.text == "," for _, t in privileges):
            return None
        if words[at + 1 : at + 2] == ["DATABASE"] and named(at + 2) and followed_by(at + 2, "TO", "FROM"):
            return solid[at + 2][0]
    return None


def database_statements(toc: ArchiveToc, fresh: str) -> list[DatabaseStatement]:
    """The archive's statements about its own database, each rewritten to act on ``fresh`` or noted as not run.

    Left out silently: pg_restore's session settings, and the database's creation and owner (the fresh
    database is created with that owner). Anything else Backstop does not recognise is not run and says so.
    """
    result: list[DatabaseStatement] = []
    grantor: str | None = None
    for tokens in _statements(toc.database_sql):
        text = " ".join("".join(t.text for t in tokens).split())
        solid = [t for t in tokens if t.kind != "space"]
        words = [t.word for t in solid]
        if words[:3] == ["SET", "SESSION", "AUTHORIZATION"]:  # the grants that follow were made by another role
            grantor = "".join(t.text for t in solid[3:]) or None
            continue
        if words[:3] == ["RESET", "SESSION", "AUTHORIZATION"]:
            grantor = None
            continue
        session_setting = (words[:1] == ["SET"] and words[1:2] != ["ROLE"]) or (
            words[:1] == ["SELECT"] and "SET_CONFIG" in words[:4]
        )
        created = words[:2] == ["CREATE", "DATABASE"] or (
            words[:2] == ["ALTER", "DATABASE"] and words[3:5] == ["OWNER", "TO"]
        )
        if session_setting or created:
            continue
        at = _database_position(tokens, toc.dbname)
        if at is None:
            result.append(DatabaseStatement(text, None, "not a statement Backstop applies to a database"))
            continue
        rewritten = [*tokens[:at], _Token("ident", _quoted(fresh)), *tokens[at + 1 :]]
        note = (
            f"granted by the database owner, not by {grantor}" if grantor and words[0] in ("GRANT", "REVOKE") else None
        )
        result.append(DatabaseStatement(text, "".join(t.text for t in rewritten).strip(), note))
    return result


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def unrestorable_statements(toc: ArchiveToc) -> list[str]:
    """What the plan says before anything runs: the archive's statements about its database that a restore
    will not apply (a statement the restore role turns out not to be allowed is named after the restore)."""
    return [
        f"Will not be restored: {_shown(statement.original)} ({statement.note})."
        for statement in database_statements(toc, toc.dbname)
        if statement.sql is None
    ]


def _shown(statement: str) -> str:
    return statement if len(statement) <= _SHOWN_STATEMENT else statement[: _SHOWN_STATEMENT - 3] + "..."


# -- restores into a server ----------------------------------------------------------------------

_SWAP_ATTEMPTS = 3
_TERMINATE_WAIT_MS = 5000


class PostgresServer:
    """The server a restore writes into: a maintenance connection and the password's ``.pgpass``.

    ``self.db`` names the target (host, port, user, dbname); the maintenance connection goes to the
    ``postgres`` database, so the target and the fresh database can be created, renamed and dropped.
    """

    def __init__(
        self,
        db: PostgresDatabase,
        conn: psycopg.Connection[TupleRow],
        pgpass: Path | None,
        password: str | None,
        libpq: dict[str, str],
        tool_libpq: dict[str, str],
    ) -> None:
        self.db = db
        self._conn = conn
        self._pgpass = pgpass
        self._password = password
        self._libpq = libpq  # psycopg's TLS and authentication settings (engines/tls.py)
        self._tool_libpq = tool_libpq  # pg_restore's
        self.load_notes: list[str] = []  # what the last load left out, said in the restore's warnings

    def _message(self, exc: psycopg.Error) -> str:
        return _psycopg_message(exc, self._password)

    def exists(self, dbname: str) -> bool:
        return self._conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone() is not None

    def sessions(self, dbname: str) -> int:
        """Other sessions connected to ``dbname`` (they are terminated by the swap)."""
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", (dbname,)
        ).fetchone()
        return int(str(row[0])) if row else 0

    def describe(self, dbname: str) -> dict[str, int] | None:
        """Row counts of ``dbname`` for the restore plan (exact below exact_count_limit); None if it does not exist."""
        if not self.exists(dbname):
            return None
        try:
            with self.connect(dbname) as conn:
                return {name: stat.rows for name, stat in count_rows(conn, self.db.exact_count_limit).items()}
        except psycopg.Error as exc:
            raise RestoreError(f"The restore target {dbname} cannot be read: {self._message(exc)}.") from None

    def connect(self, dbname: str) -> psycopg.Connection[TupleRow]:
        db = self.db
        return psycopg.connect(
            make_conninfo(**self._libpq),
            host=db.host,
            port=db.port,
            dbname=dbname,
            user=db.user,
            password=self._password,
            connect_timeout=max(2, int(db.connect_timeout.total_seconds())),
            application_name="backstop",
            autocommit=True,
        )

    def check_owners(self, toc: ArchiveToc, target: str) -> None:
        """RestoreError in one sentence unless the restore can keep every owner the archive records.

        Each owning role must exist here, and the restore role must be able to act as it (``SET ROLE``:
        be a member, or a superuser), and as the owner of an existing ``target``, which the swap renames,
        and as ``app_role``, which validation becomes. A superuser's objects can only be given to it by a
        superuser: a non-superuser restore role is refused rather than asked to become one.
        """
        user = self.db.user
        app_role = self.db.app_role
        privilege = "SET" if server_version_num(self._conn) >= 160000 else "MEMBER"
        try:
            rows = self._conn.execute(
                "SELECT rolname, rolsuper, pg_has_role(current_user, oid, %s) FROM pg_roles WHERE rolname = ANY(%s)",
                (privilege, sorted(toc.owners | {app_role} if app_role else toc.owners)),
            ).fetchall()
            target_owner = self._conn.execute(
                "SELECT r.rolname, r.rolsuper, pg_has_role(current_user, r.oid, %s) "
                "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = %s",
                (privilege, target),
            ).fetchone()
        except psycopg.Error as exc:
            raise RestoreError(f"The owners of the backup's objects cannot be checked: {self._message(exc)}.") from None
        roles = {str(name): (bool(superuser), bool(can)) for name, superuser, can in rows}
        missing = sorted(toc.owners - roles.keys())
        if missing:
            which = "role " + missing[0] if len(missing) == 1 else "roles " + ", ".join(missing)
            raise RestoreError(
                f"The backup's objects are owned by {which}, which {'does' if len(missing) == 1 else 'do'} not exist "
                f"on {self.db.host}:{self.db.port}: create {'it' if len(missing) == 1 else 'them'} there first "
                "(a restore keeps owners)."
            )
        for owner in sorted(toc.owners):
            superuser, can = roles[owner]
            if can:
                continue
            if superuser:
                raise RestoreError(
                    f"The backup's objects are owned by the superuser {owner}, which only a superuser restore role "
                    f"can keep: restore as a superuser, or give those objects a non-superuser owner in the source."
                )
            raise RestoreError(
                f"The restore role {user} cannot act as {owner}, which owns objects of the backup: "
                f"GRANT {owner} TO {user} (a restore keeps owners)."
            )
        if app_role is not None and app_role not in roles:
            raise RestoreError(
                f"Validation runs as the application's role {app_role}, which does not exist on "
                f"{self.db.host}:{self.db.port}: create it there, or correct app_role."
            )
        if app_role is not None and not roles[app_role][1]:
            raise RestoreError(
                f"Validation runs as the application's role {app_role}, which the restore role {user} cannot "
                f"become: GRANT {app_role} TO {user}."
            )
        if target_owner is not None and not target_owner[2]:
            owner = str(target_owner[0])
            remedy = "restore as a superuser" if target_owner[1] else f"GRANT {owner} TO {user}"
            raise RestoreError(
                f"The restore role {user} cannot rename the existing {target}, owned by {owner}, out of the way: "
                f"{remedy}."
            )

    def create_fresh(self, fresh: str, like: str, owner: str | None = None) -> None:
        """An empty database ``fresh`` from template0 owned by ``owner`` (the restore role if None), with the
        encoding and locale of ``like`` if it exists."""
        try:
            row = self._conn.execute(
                "SELECT pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database WHERE datname = %s",
                (like,),
            ).fetchone()
            query = sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(fresh))
            if owner is not None:
                query = query + sql.SQL(" OWNER {}").format(sql.Identifier(owner))
            if row is not None:
                query = query + sql.SQL(" ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
                    sql.Literal(str(row[0])), sql.Literal(str(row[1])), sql.Literal(str(row[2]))
                )
            self._conn.execute(query)
        except psycopg.Error as exc:
            raise RestoreError(f"The fresh database {fresh} cannot be created: {self._message(exc)}.") from None

    def drop(self, dbname: str) -> None:
        self._conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))

    @contextmanager
    def pg_restore(self, dbname: str, run_dir: Path) -> Iterator[Callable[[bytes], None]]:
        """``pg_restore --exit-on-error`` into ``dbname``, reading the archive fed to it inside the block.

        Owners are kept: every object is given the owner the archive records (see ``check_owners``).
        Into a server older than pg_restore, pg_restore writes the script and psql runs it
        (``engines.pg_script``): pg_restore would otherwise stop at a setting the server does not have.

        Yields the function that feeds it (the archive needs no file: nothing is written to disk).
        Leaving the block cleanly closes its input and waits for it, RestoreError on any error; if
        the block fails, pg_restore is stopped and the block's own error is raised. Whatever was
        loaded stays in ``dbname`` either way: the caller drops it.
        """
        db = self.db
        conninfo = make_conninfo(
            host=db.host,
            port=str(db.port),
            dbname=dbname,
            user=db.user,
            connect_timeout=str(max(2, int(db.connect_timeout.total_seconds()))),
            application_name="backstop",
            **self._tool_libpq,
        )
        client_major, client_version = tool_version("pg_restore")
        server_num = server_version_num(self._conn)
        if client_major > server_num // 10000:
            yield from self._script_restore(conninfo, run_dir, client_version, server_num)
            return
        errors = run_dir / "pg_restore-restore.stderr"
        command = [
            tool_path("pg_restore"),
            "--format=custom",
            "--exit-on-error",
            "--no-password",
            f"--dbname={conninfo}",
        ]
        with errors.open("wb") as err:
            try:
                process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    env=child_env(self.db, self._pgpass, self._password),
                    pipesize=PIPE_SIZE,
                )
            except OSError as exc:
                raise RestoreError(f"pg_restore cannot be started: {exc.strerror}.") from None
        assert process.stdin is not None
        pipes = _Pipes([process.stdin])
        try:
            yield pipes.feed
        except BaseException:
            pipes.finish()
            if process.poll() is None:
                process.kill()
            process.wait()
            raise
        pipes.finish()
        code = process.wait()  # no time limit: a large restore takes as long as it takes
        if code != 0:
            raise RestoreError(
                f"pg_restore into the fresh database {dbname} {_exit_text(code)}: {_excerpt(errors, self._password)}."
            )

    def _script_restore(
        self, conninfo: str, run_dir: Path, client_version: str, server_num: int
    ) -> Iterator[Callable[[bytes], None]]:
        """The restore into a server older than pg_restore, through psql (see ``engines.pg_script``)."""
        known = frozenset(str(row[0]) for row in self._conn.execute("SELECT name FROM pg_settings").fetchall())
        with script_restore(
            [tool_path("pg_restore"), "--format=custom"],
            [tool_path("psql"), "--no-psqlrc", "--quiet", "--set=ON_ERROR_STOP=1", "--no-password", conninfo],
            known=known,
            reader_env=reader_env(),
            psql_env=child_env(self.db, self._pgpass, self._password),
            run_dir=run_dir,
            excerpt=lambda path: _excerpt(path, self._password),
            pipe_size=PIPE_SIZE,
        ) as (feed, left_out):
            yield feed
        server = f"{server_num // 10000}.{server_num % 10000}" if server_num >= 100000 else str(server_num)
        self.load_notes = [
            f"pg_restore {client_version} sets {name}, which PostgreSQL {server} does not have: left out."
            for name in left_out
        ]

    def restore_database(self, fresh: str, toc: ArchiveToc) -> list[str]:
        """The archive's settings, comment and grants of its database, applied to ``fresh``; what was not, named.

        pg_restore runs them only when it creates the database under the archive's own name (``--create``),
        which a restore into a fresh database cannot: Backstop runs them itself, each statement on its own
        and only if it acts on the archive's database alone (rewritten to act on ``fresh``). A statement
        the restore role may not run (a setting for another role needs CREATEROLE) is skipped, not fatal.
        """
        warnings: list[str] = []
        for statement in database_statements(toc, fresh):
            if statement.sql is None:
                warnings.append(f"Not restored: {_shown(statement.original)} ({statement.note}).")
                continue
            try:
                self._conn.execute(statement.sql.encode())
            except psycopg.Error as exc:
                warnings.append(f"Not restored: {_shown(statement.original)} ({self._message(exc)}).")
                continue
            if statement.note:
                warnings.append(f"Restored {_shown(statement.original)}, {statement.note}.")
        return warnings

    def validate(self, dbname: str, manifest: Manifest) -> Inspection:
        """Exact row counts of ``dbname`` equal to the manifest's exact ones, and every validation query truthy.

        Tables the manifest records as planner estimates are only checked to exist.
        """
        try:
            with self.connect(dbname) as conn:
                found = [(str(s), str(n)) for s, n, _ in conn.execute(_TABLES).fetchall()]
                tables: dict[str, TableStat] = {}
                diffs: list[str] = []
                for schema, name in found:
                    qualified = f"{schema}.{name}"
                    expected = manifest.tables.get(qualified)
                    if expected is None:
                        diffs.append(f"{qualified}: absent expected, present found")
                        continue
                    if not expected.exact:
                        continue
                    query = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name))
                    row = conn.execute(query).fetchone()
                    rows = int(str(row[0])) if row else 0
                    tables[qualified] = TableStat(rows=rows, exact=True)
                    if rows != expected.rows:
                        diffs.append(f"{qualified}: {expected.rows} expected, {rows} found")
                present = {f"{s}.{n}" for s, n in found}
                missing = [name for name in manifest.tables if name not in present]
                diffs.extend(f"{name}: present expected, absent found" for name in missing)
                if diffs:
                    raise ValidationError(
                        f"The restored database {dbname} does not match the manifest's row counts "
                        f"({'; '.join(sorted(diffs)[:5])})."
                    )
                if self.db.validation_queries:
                    self._run_validation_queries(conn)
        except psycopg.Error as exc:
            raise ValidationError(f"The restored database {dbname} cannot be read: {self._message(exc)}.") from None
        detail = f"{len(tables)} exact row counts equal the manifest, {len(self.db.validation_queries)} queries passed"
        return Inspection(integrity=IntegrityCheck(check="restore", passed=True, detail=detail), tables=tables)

    def _run_validation_queries(self, conn: psycopg.Connection[TupleRow]) -> None:
        """Each validation query, as the application's role if one is configured, in one read-only transaction
        that is rolled back: a query that writes fails, and changes nothing either way.

        Each query is sent alone as a prepared statement, so it cannot be several (``...; COMMIT; DELETE``).
        """
        role = self.db.app_role
        with conn.transaction():
            conn.execute("SET TRANSACTION READ ONLY")
            # A query taken now fixes the mode: no later query can turn the transaction read-write.
            conn.execute("SELECT 1")
            for number, text in enumerate(self.db.validation_queries, 1):
                if role is not None:
                    self._become(conn, role)  # again each time: a query may have changed the role
                try:
                    answer = conn.execute(text.encode(), prepare=True).fetchone()
                except psycopg.Error as exc:
                    raise ValidationError(
                        f"Validation query {number} failed on the restored database"
                        f"{f' as {role}' if role else ''}: {self._message(exc)}."
                    ) from None
                if answer is None or not answer[0]:
                    value = "no row" if answer is None else repr(answer[0])
                    raise ValidationError(
                        f"Validation query {number} returned {value} on the restored database, not a true value."
                    )
            raise psycopg.Rollback()

    def _become(self, conn: psycopg.Connection[TupleRow], role: str) -> None:
        try:
            conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        except psycopg.errors.InsufficientPrivilege:
            raise ValidationError(
                f"Validation queries run as the application's role {role}, which the restore role {self.db.user} "
                f"cannot become: GRANT {role} TO {self.db.user}."
            ) from None
        except psycopg.Error as exc:
            raise ValidationError(
                f"Validation queries cannot run as the application's role {role}: {self._message(exc)}."
            ) from None

    def swap(self, fresh: str, target: str, pre_restore: str) -> bool:
        """In one transaction: ``target`` renamed to ``pre_restore`` (if it exists), ``fresh`` to ``target``.

        Other sessions on the target are terminated first. Returns whether a previous target was kept.
        RestoreError (nothing renamed) when the renames cannot be made.
        """
        for attempt in range(1, _SWAP_ATTEMPTS + 1):
            try:
                with self._conn.transaction():
                    existed = self.exists(target)
                    if existed:
                        self._conn.execute(
                            "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity "
                            "WHERE datname = %s AND pid <> pg_backend_pid()",
                            (_TERMINATE_WAIT_MS, target),
                        )
                        self._conn.execute(
                            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                                sql.Identifier(target), sql.Identifier(pre_restore)
                            )
                        )
                    self._conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(fresh), sql.Identifier(target))
                    )
                return existed
            except psycopg.errors.ObjectInUse as exc:  # a session reconnected between terminate and rename
                if attempt == _SWAP_ATTEMPTS:
                    raise RestoreError(
                        f"The target {target} cannot be swapped: {self._message(exc)} (sessions keep reconnecting)."
                    ) from None
            except psycopg.Error as exc:
                raise RestoreError(f"The target {target} cannot be swapped: {self._message(exc)}.") from None
        raise AssertionError("unreachable")

    def databases(self, prefix: str) -> list[str]:
        """The names of the server's databases that begin with ``prefix``, sorted (how pre-restore copies are found)."""
        query = "SELECT datname FROM pg_database WHERE starts_with(datname, %s)"
        rows = self._conn.execute(query, (prefix,)).fetchall()
        return sorted(str(row[0]) for row in rows)


@contextmanager
def restore_server(db: PostgresDatabase, run_dir: Path) -> Iterator[PostgresServer]:
    """The server of ``db`` (the restore target), with its password in a 0600 ``.pgpass`` in ``run_dir``.

    Every connection to it, psycopg's and pg_restore's, carries ``db``'s TLS (``engines/tls.py``).
    """
    password = resolve_password(db)
    with ExitStack() as stack:
        ca = stack.enter_context(trust_file(db, run_dir, RestoreError))
        own = auth_restricted(db, "psycopg", psycopg_restricts_auth(), password, RestoreError)
        tool = auth_restricted(db, "pg_restore", tool_restricts_auth(tool_path("pg_restore")), password, RestoreError)
        libpq = libpq_settings(db, ca, restrict_auth=own)
        pgpass = None
        if password is not None:
            pgpass = stack.enter_context(private_file(run_dir, ".pgpass", pgpass_line(db, password)))
        try:
            conn = psycopg.connect(
                make_conninfo(**libpq),
                host=db.host,
                port=db.port,
                dbname="postgres",
                user=db.user,
                password=password,
                connect_timeout=max(2, int(db.connect_timeout.total_seconds())),
                application_name="backstop",
                autocommit=True,
            )
        except psycopg.Error as exc:
            reason = _psycopg_message(exc, password)
            raise RestoreError(
                f"Cannot connect to the PostgreSQL server {db.host}:{db.port} as {db.user}: {reason}"
                f"{tls_hint(db, reason)}."
            ) from None
        stack.callback(conn.close)
        yield PostgresServer(db, conn, pgpass, password, libpq, libpq_settings(db, ca, restrict_auth=tool))
