"""Restores into a MySQL or MariaDB server: load into a fresh database, validate, then one ``RENAME TABLE``.

MySQL has no ``RENAME DATABASE``, so the swap moves tables. Every base table of the target goes to
``<target>_pre_restore_<stamp>`` and every table of the fresh database into the target, in a
single ``RENAME TABLE`` statement, which the server applies entirely or not at all. What cannot
cross databases is carried around it:

- triggers (a table with triggers cannot be renamed into another database) are read with
  ``SHOW CREATE TRIGGER``, dropped just before the rename and created again just after it;
- views, stored routines and events belong to the database, not to a table: the target's old ones
  are dropped and the backup's are created from the fresh database's definitions.

Each step of the swap registers its undo. Sessions on the target are disconnected first (as
PostgreSQL's swap does), the restored target is validated again after the swap, and any failure
runs the undo steps in reverse, so the target ends as it was: the old tables renamed back, its
triggers, views, routines and events created again. Only if an undo step itself fails is the
operator told to intervene, with where the tables are.

The kept ``_pre_restore_`` database receives the old tables, their triggers, views and routines,
and the old events disabled (a safety copy must not run scheduled jobs).

Definitions are read with the database selected, so the server prints views without the database
name and they can be created in another one. Every object is read as the bytes the server keeps
(``character_set_results = binary``) and created again from them, DEFINER included, under its
recorded ``character_set_client`` and ``collation_connection`` (and triggers, routines and events
under their ``sql_mode``, events under their time zone): ``SHOW CREATE`` after a restore reports
what it reported in the source.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql

from backstop.adapters.secrets import mysql_option_file, private_file, resolve_password
from backstop.config import MysqlDatabase
from backstop.engines.base import Inspection
from backstop.engines.mysql import child_env
from backstop.engines.mysql import quote_identifier as q
from backstop.engines.tls import connect_mysql, mysql_tool_options, tls_hint, trust_file
from backstop.errors import BackstopError, ManualInterventionError, RestoreError, ValidationError
from backstop.manifest import IntegrityCheck, Manifest, TableStat

log = logging.getLogger(__name__)

CLIENT_TOOLS = ("mariadb", "mysql")
CHARSET = "utf8mb4"  # of the restore's own connection
_EXCERPT_CHARS = 300
_VIEW_PASSES = 20  # views on views are created in as many passes as their nesting needs
_TEXT_COLUMN = {"VIEW": 1, "TRIGGER": 2, "PROCEDURE": 2, "FUNCTION": 2, "EVENT": 3}  # of SHOW CREATE's row


def sandboxed_client(env: dict[str, str]) -> str:
    """The client's path (mariadb preferred), if it has ``--sandbox``; RestoreError in one sentence if not.

    A dump is loaded through the client, which would run some of its lines itself (``\\!``,
    ``system``, ``source``...). Sandbox mode refuses those that touch the host's files or shell;
    MariaDB clients have it since 10.5.25, 10.6.18, 10.11.8 and 11.4.2, Oracle's mysql not at all.
    """
    for name in CLIENT_TOOLS:
        path = shutil.which(name)
        if path is None:
            continue
        try:
            usage = subprocess.run(
                [path, "--help"], stdin=subprocess.DEVNULL, capture_output=True, env=env, check=False, timeout=30
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            usage = b""
        if b"--sandbox" not in usage:
            raise RestoreError(
                f"The MySQL client {path} has no --sandbox option, so a dump could run commands on this host through "
                "it; install a MariaDB client of version 10.5.25, 10.6.18, 10.11.8, 11.4.2 or later."
            )
        return path
    raise RestoreError("Neither mariadb nor mysql (the client) is installed; install the MariaDB client.")


@dataclass(frozen=True)
class _Definition:
    """One object to create again: its statement and the session settings it was created under.

    ``statement`` is the bytes the server keeps, in the object's ``character_set_client``: sent back
    as they are under that character set and ``collation_connection``, the object is recorded with
    both again, and any character outside ASCII means what it meant.
    """

    kind: str  # TRIGGER, VIEW, PROCEDURE, FUNCTION, EVENT
    name: str
    statement: bytes
    character_set_client: str
    collation_connection: str
    sql_mode: str | None = None  # views keep none
    time_zone: str | None = None
    enabled: bool = True

    def drop(self) -> str:
        return f"DROP {self.kind} IF EXISTS {q(self.name)}"


@dataclass
class Objects:
    """A database's base tables, and the triggers, views, routines and events that cannot be renamed along."""

    tables: list[str] = field(default_factory=list)
    triggers: list[_Definition] = field(default_factory=list)
    views: list[_Definition] = field(default_factory=list)
    routines: list[_Definition] = field(default_factory=list)
    events: list[_Definition] = field(default_factory=list)

    def names(self) -> dict[str, list[str]]:
        return {
            "tables": sorted(self.tables),
            "triggers": sorted(d.name for d in self.triggers),
            "views": sorted(d.name for d in self.views),
            "routines": sorted(f"{d.kind} {d.name}" for d in self.routines),
            "events": sorted(d.name for d in self.events),
        }


class MysqlServer:
    """The server a restore writes into: one autocommit connection, and the client's option file."""

    def __init__(
        self,
        db: MysqlDatabase,
        conn: pymysql.connections.Connection[Any],
        options: Path | None,
        password: str | None,
        client: str,
        tls_options: list[str],
    ) -> None:
        self.db = db
        self._conn = conn
        self._options = options
        self._password = password
        self._client = client
        self._tls_options = tls_options  # the client's TLS (engines/tls.py)

    # -- reading ------------------------------------------------------------------------------

    def _message(self, exc: BaseException) -> str:
        text = str(exc.args[1]) if isinstance(exc, pymysql.MySQLError) and len(exc.args) > 1 else str(exc)
        text = " ".join(text.split()).rstrip(".")
        if self._password:
            text = text.replace(self._password, "***")
        return text[:_EXCERPT_CHARS]

    def _rows(self, statement: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(statement, args)
            return list(cur.fetchall())

    def _execute(self, statement: str | bytes, args: tuple[Any, ...] | None = None) -> None:
        if isinstance(statement, bytes):  # a definition's own bytes (see _create), sent without re-encoding
            self._conn.query(statement)
            return
        with self._conn.cursor() as cur:
            cur.execute(statement, args)

    def exists(self, dbname: str) -> bool:
        return bool(self._rows("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (dbname,)))

    def sessions(self, dbname: str) -> int:
        """Other sessions using ``dbname`` (they are disconnected by the swap)."""
        rows = self._rows(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (dbname,)
        )
        return int(rows[0][0]) if rows else 0

    def _tables(self, dbname: str) -> list[tuple[str, int | None]]:
        return [
            (str(name), None if estimate is None else int(estimate))
            for name, estimate in self._rows(
                "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s "
                "AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY TABLE_NAME",
                (dbname,),
            )
        ]

    def _count(self, dbname: str, table: str) -> int:
        rows = self._rows(f"SELECT COUNT(*) FROM {q(dbname)}.{q(table)}")
        return int(rows[0][0]) if rows else 0

    def describe(self, dbname: str) -> dict[str, int] | None:
        """Row counts of ``dbname`` for the restore plan (exact below exact_count_limit); None if it does not exist."""
        if not self.exists(dbname):
            return None
        try:
            return {
                name: self._count(dbname, name)
                if estimate is None or estimate < self.db.exact_count_limit
                else estimate
                for name, estimate in self._tables(dbname)
            }
        except pymysql.MySQLError as exc:
            raise RestoreError(f"The restore target {dbname} cannot be read: {self._message(exc)}.") from None

    def objects(self, dbname: str) -> Objects:
        """Everything in ``dbname`` a swap must carry, read with ``dbname`` selected (views print unqualified)."""
        found = Objects(tables=[name for name, _ in self._tables(dbname)])
        self._conn.select_db(dbname)
        for (name,) in self._rows(
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s "
            "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (dbname,),
        ):
            _, mode, text, client, collation, *_ = self._show_create("TRIGGER", str(name))
            found.triggers.append(_definition("TRIGGER", str(name), text, client, collation, sql_mode=mode))
        for (name,) in self._rows(
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME", (dbname,)
        ):
            _, text, client, collation = self._show_create("VIEW", str(name))
            found.views.append(_definition("VIEW", str(name), text, client, collation))
        for kind, name in self._rows(
            "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s "
            "AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (dbname,),
        ):
            _, mode, text, client, collation, *_ = self._show_create(str(kind), str(name))
            found.routines.append(_definition(str(kind), str(name), text, client, collation, sql_mode=mode))
        for name, status in self._rows(
            "SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s ORDER BY EVENT_NAME",
            (dbname,),
        ):
            _, mode, zone, text, client, collation, *_ = self._show_create("EVENT", str(name))
            found.events.append(
                _definition(
                    "EVENT",
                    str(name),
                    text,
                    client,
                    collation,
                    sql_mode=mode,
                    time_zone=zone,
                    enabled=status == "ENABLED",
                )
            )
        return found

    def _show_create(self, kind: str, name: str) -> tuple[Any, ...]:
        """``SHOW CREATE <kind> <name>`` with its texts as the bytes the server keeps (``character_set_results``
        binary, as the dump tools read them): converted to utf8mb4 they could not be sent back as they were."""
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION character_set_results = binary")
            try:
                cur.execute(f"SHOW CREATE {kind} {q(name)}")
                row = cur.fetchone()
            finally:
                cur.execute("SET SESSION character_set_results = %s", (CHARSET,))
        if row is None or row[_TEXT_COLUMN[kind]] is None:
            # The server hides a routine's body from a user that is neither its definer nor allowed to read it.
            raise RestoreError(
                f"The definition of {kind.lower()} {name} cannot be read by {self.db.user}: see the MySQL restore "
                "privileges in docs/runbooks/restore.md."
            )
        return tuple(row)

    # -- writing ------------------------------------------------------------------------------

    def create_fresh(self, fresh: str, like: str) -> None:
        """An empty database ``fresh`` with the character set and collation of ``like`` (utf8mb4 if it is absent)."""
        rows = self._rows(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
            "WHERE SCHEMA_NAME = %s",
            (like,),
        )
        charset, collation = (str(rows[0][0]), str(rows[0][1])) if rows else ("utf8mb4", None)
        statement = f"CREATE DATABASE {q(fresh)} CHARACTER SET {charset}"
        if collation:
            statement += f" COLLATE {collation}"
        try:
            self._execute(statement)
        except pymysql.MySQLError as exc:
            raise RestoreError(f"The fresh database {fresh} cannot be created: {self._message(exc)}.") from None

    def drop(self, dbname: str) -> None:
        self._execute(f"DROP DATABASE IF EXISTS {q(dbname)}")

    def load(self, raw: Path, dbname: str, run_dir: Path) -> None:
        """Run the dump through the ``mariadb`` client into ``dbname``; it stops at the first error (RestoreError).

        The dump was checked for client commands already (``MysqlEngine.inspect_artifact``); the
        client still runs as if it had not been: ``--sandbox`` refuses commands that touch files or
        run a shell, ``--binary-mode`` turns off every command but DELIMITER (and ``\\C``), so
        neither ``connect`` (the password to another host) nor ``use`` works, and
        ``--local-infile=0`` refuses ``LOAD DATA LOCAL`` (a file of this host into a table).
        """
        db = self.db
        command = [self._client]
        if self._options is not None:
            command.append(f"--defaults-extra-file={self._options}")  # must be the first option
        command += [
            f"--host={db.host}",
            f"--port={db.port}",
            f"--user={db.user}",
            "--protocol=TCP",
            *self._tls_options,
            "--default-character-set=utf8mb4",
            "--batch",
            "--sandbox",
            "--binary-mode",
            "--local-infile=0",
            f"--connect-timeout={max(1, int(db.connect_timeout.total_seconds()))}",
            f"--database={dbname}",
        ]
        env = child_env(db, self._password)
        errors = run_dir / "load.stderr"
        with raw.open("rb") as dump, errors.open("wb") as err:
            try:
                code = subprocess.run(command, stdin=dump, stdout=subprocess.DEVNULL, stderr=err, env=env).returncode
            except OSError as exc:
                raise RestoreError(f"The MySQL client cannot be started: {exc.strerror}.") from None
        if code != 0:
            text = errors.read_text(encoding="utf-8", errors="replace")
            lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
            excerpt = " | ".join(lines[-2:]) or "no error output"
            if self._password:
                excerpt = excerpt.replace(self._password, "***")
            raise RestoreError(
                f"Loading the dump into the fresh database {dbname} failed "
                f"({'killed by signal ' + str(-code) if code < 0 else 'exit ' + str(code)}): "
                f"{excerpt[:_EXCERPT_CHARS]}."
            )

    def validate(self, dbname: str, manifest: Manifest) -> Inspection:
        """Exact row counts of ``dbname`` equal to the manifest's, and every validation query truthy."""
        try:
            found = [name for name, _ in self._tables(dbname)]
            tables = {name: TableStat(rows=self._count(dbname, name), exact=True) for name in found}
            expected = {name: stat.rows for name, stat in manifest.tables.items()}
            actual = {name: stat.rows for name, stat in tables.items()}
            if expected != actual:
                diffs = [
                    f"{name}: {expected.get(name, 'absent')} expected, {actual.get(name, 'absent')} found"
                    for name in sorted(set(expected) | set(actual))
                    if expected.get(name) != actual.get(name)
                ]
                raise ValidationError(
                    f"The restored database {dbname} does not match the manifest's row counts ({'; '.join(diffs[:5])})."
                )
            self._conn.select_db(dbname)
            self._execute("START TRANSACTION READ ONLY")
            try:
                self._run_validation_queries()
            finally:
                with suppress(pymysql.MySQLError):  # a broken connection has already failed the validation
                    self._execute("ROLLBACK")
        except pymysql.MySQLError as exc:
            raise ValidationError(f"The restored database {dbname} cannot be read: {self._message(exc)}.") from None
        detail = f"{len(tables)} exact row counts equal the manifest, {len(self.db.validation_queries)} queries passed"
        return Inspection(integrity=IntegrityCheck(check="restore", passed=True, detail=detail), tables=tables)

    def _run_validation_queries(self) -> None:
        """Each configured query, in the read-only transaction ``validate`` opened: its first value must be true.

        Every query starts with SELECT, WITH, VALUES, TABLE or SHOW (``restore_server`` refuses
        others), so none can end the transaction (no DDL, no CALL of a procedure that commits), and
        the transaction refuses any write, a function's included.
        """
        for number, text in enumerate(self.db.validation_queries, 1):
            try:
                rows = self._rows(text)
            except pymysql.MySQLError as exc:
                raise ValidationError(
                    f"Validation query {number} failed on the restored database: {self._message(exc)}."
                ) from None
            if not rows or not rows[0][0]:
                value = "no row" if not rows else repr(rows[0][0])
                raise ValidationError(
                    f"Validation query {number} returned {value} on the restored database, not a true value."
                )

    def _create(self, dbname: str, definition: _Definition, *, enabled: bool | None = None) -> None:
        """Create ``definition`` in ``dbname`` under its recorded sql_mode, time zone, character set and collation.

        The server records the session's ``character_set_client`` and ``collation_connection`` with
        the object (its DEFINER is in the statement): they are set to the recorded ones around it.
        """
        self._conn.select_db(dbname)
        saved = self._rows(
            "SELECT @@SESSION.sql_mode, @@SESSION.time_zone, @@SESSION.character_set_client, "
            "@@SESSION.collation_connection"
        )[0]
        try:
            if definition.sql_mode is not None:
                self._execute("SET SESSION sql_mode = %s", (definition.sql_mode,))
            if definition.time_zone is not None:
                self._execute("SET SESSION time_zone = %s", (definition.time_zone,))
            self._execute(
                "SET SESSION character_set_client = %s, collation_connection = %s",
                (definition.character_set_client, definition.collation_connection),
            )
            self._execute(definition.statement)
            if definition.kind == "EVENT" and enabled is not None and enabled != definition.enabled:
                self._execute(f"ALTER EVENT {q(definition.name)} {'ENABLE' if enabled else 'DISABLE'}")
        finally:
            self._execute(
                "SET SESSION sql_mode = %s, time_zone = %s, character_set_client = %s, collation_connection = %s",
                tuple(saved),
            )

    def _drop(self, dbname: str, definition: _Definition) -> None:
        self._conn.select_db(dbname)
        self._execute(definition.drop())

    def _create_views(self, dbname: str, views: list[_Definition]) -> list[_Definition]:
        """Create views in dependency order (a pass at a time); returns them in creation order."""
        pending, created = list(views), list[_Definition]()
        for _ in range(_VIEW_PASSES):
            if not pending:
                return created
            failed: list[_Definition] = []
            last: pymysql.MySQLError | None = None
            for view in pending:
                try:
                    self._create(dbname, view)
                    created.append(view)
                except pymysql.MySQLError as exc:  # it may need a view not created yet
                    failed.append(view)
                    last = exc
            if len(failed) == len(pending):
                assert last is not None
                raise last
            pending = failed
        if pending:
            raise RestoreError(f"Views {', '.join(v.name for v in pending)} could not be created in {dbname}.")
        return created

    def _drop_if_empty(self, dbname: str) -> None:
        """Drop a database the swap created, unless tables are (still) in it: an undo never drops data."""
        if self._tables(dbname):
            raise RestoreError(f"{dbname} still holds tables")
        self.drop(dbname)

    def _recreate_views(self, dbname: str, views: list[_Definition]) -> None:
        self._create_views(dbname, views)

    def disconnect(self, dbname: str) -> int:
        """Kill the other sessions using ``dbname``; returns how many."""
        ids = [
            int(row[0])
            for row in self._rows(
                "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND ID <> CONNECTION_ID()", (dbname,)
            )
        ]
        for session in ids:
            with suppress(pymysql.MySQLError):  # it may have ended on its own meanwhile
                self._execute(f"KILL CONNECTION {session}")
        return len(ids)

    def swap(self, fresh: str, target: str, pre_restore: str, manifest: Manifest) -> tuple[bool, list[str]]:
        """Move the fresh database's tables into ``target`` and the target's into ``pre_restore``, atomically.

        Returns whether an old target was kept, and warnings about the kept copy. RestoreError when
        the swap cannot be made, with the target as it was; if even that fails, the error says where
        every table is.
        """
        try:
            new = self.objects(fresh)
            existed = self.exists(target)
            old = self.objects(target) if existed else Objects()
        except pymysql.MySQLError as exc:
            raise RestoreError(
                f"The tables, views, triggers, routines and events of {fresh} and {target} cannot be read by "
                f"{self.db.user}: {self._message(exc)}."
            ) from None
        undo: list[tuple[str, Callable[[], None]]] = []
        try:
            if existed:
                self.create_fresh(pre_restore, like=target)
                undo.append(("drop the empty pre-restore database", lambda: self._drop_if_empty(pre_restore)))
                self.disconnect(target)
            else:
                self.create_fresh(target, like=fresh)
                undo.append(("drop the new target database", lambda: self._drop_if_empty(target)))
            for trigger in new.triggers:
                self._drop(fresh, trigger)
            for trigger in old.triggers:
                self._drop(target, trigger)
                undo.append((f"create trigger {trigger.name}", _bind(self._create, target, trigger)))
            for view in old.views:
                self._drop(target, view)
            if old.views:
                undo.append(("create the old views", lambda: self._recreate_views(target, old.views)))
            moves = [f"{q(target)}.{q(t)} TO {q(pre_restore)}.{q(t)}" for t in old.tables]
            moves += [f"{q(fresh)}.{q(t)} TO {q(target)}.{q(t)}" for t in new.tables]
            if moves:
                self._execute("RENAME TABLE " + ", ".join(moves))
            back = [f"{q(target)}.{q(t)} TO {q(fresh)}.{q(t)}" for t in new.tables]
            back += [f"{q(pre_restore)}.{q(t)} TO {q(target)}.{q(t)}" for t in old.tables]
            undo.append(("rename the tables back", lambda: self._execute("RENAME TABLE " + ", ".join(back))))
            for definition in [*old.routines, *old.events]:
                self._drop(target, definition)
                undo.append(
                    (f"create {definition.kind.lower()} {definition.name}", _bind(self._create, target, definition))
                )
            for definition in [*new.triggers, *new.routines, *new.events]:
                undo.append(
                    (f"drop {definition.kind.lower()} {definition.name}", _bind(self._drop, target, definition))
                )
                self._create(target, definition)
            for view in new.views:
                undo.append((f"drop view {view.name}", _bind(self._drop, target, view)))
            self._create_views(target, new.views)
            self.validate(target, manifest)
            moved = self.objects(target).names()
            if moved != new.names():
                raise RestoreError(f"The swapped target {target} does not hold what the fresh database held.")
        except BaseException as exc:
            self._undo(undo, target, fresh, pre_restore)  # raises ManualInterventionError if it cannot
            if isinstance(exc, pymysql.MySQLError):
                raise RestoreError(f"The target {target} cannot be swapped: {self._message(exc)}.") from None
            raise
        warnings = self._complete_pre_restore(pre_restore, old) if existed else []
        with suppress(pymysql.MySQLError):
            self.drop(fresh)
        return existed, warnings

    def _undo(self, undo: list[tuple[str, Callable[[], None]]], target: str, fresh: str, pre_restore: str) -> None:
        failed = []
        for what, step in reversed(undo):
            try:
                step()
            except (
                pymysql.MySQLError,
                BackstopError,
            ) as exc:  # keep undoing: every step that works brings the target closer
                failed.append(f"{what} ({self._message(exc)})")
        if failed:
            raise ManualInterventionError(
                f"The swap into {target} failed and could not be fully undone: manual intervention needed "
                f"({'; '.join(failed[:3])}); the old tables are in {pre_restore} or {target}, the backup's in "
                f"{fresh} or {target}."
            )

    def _complete_pre_restore(self, pre_restore: str, old: Objects) -> list[str]:
        """Give the kept copy its triggers, views, routines and (disabled) events; warnings for what failed."""
        warnings = []
        for definition in [*old.triggers, *old.routines]:
            try:
                self._create(pre_restore, definition)
            except pymysql.MySQLError as exc:
                warnings.append(
                    f"{definition.kind.lower()} {definition.name} not copied to {pre_restore}: {self._message(exc)}"
                )
        for definition in old.events:
            try:
                self._create(pre_restore, definition, enabled=False)
            except pymysql.MySQLError as exc:
                warnings.append(f"event {definition.name} not copied to {pre_restore}: {self._message(exc)}")
        try:
            self._create_views(pre_restore, old.views)
        except (pymysql.MySQLError, RestoreError) as exc:
            warnings.append(f"views not all copied to {pre_restore}: {self._message(exc)}")
        for warning in warnings:
            log.warning("%s", warning)
        return warnings

    def databases(self, prefix: str) -> list[str]:
        """The names of the server's databases that begin with ``prefix``, sorted (how pre-restore copies are found)."""
        rows = self._rows(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE LEFT(SCHEMA_NAME, %s) = %s",
            (len(prefix), prefix),
        )
        return sorted(name for name in (str(row[0]) for row in rows) if name.startswith(prefix))  # exact case


def _definition(
    kind: str,
    name: str,
    statement: bytes,
    client: bytes,
    collation: bytes,
    *,
    sql_mode: bytes | None = None,
    time_zone: bytes | None = None,
    enabled: bool = True,
) -> _Definition:
    """A ``_Definition`` from the columns of ``SHOW CREATE`` read as bytes (settings are ASCII names)."""
    return _Definition(
        kind,
        name,
        statement,
        character_set_client=client.decode("ascii"),
        collation_connection=collation.decode("ascii"),
        sql_mode=None if sql_mode is None else sql_mode.decode("ascii"),
        time_zone=None if time_zone is None else time_zone.decode("ascii"),
        enabled=enabled,
    )


def _bind(method: Callable[[str, _Definition], object], dbname: str, definition: _Definition) -> Callable[[], None]:
    def step() -> None:
        method(dbname, definition)

    return step


_QUERY_START = re.compile(
    r"(?:\s+|/\*(?![!]|M!).*?\*/|(?:--(?=\s)|#)[^\n]*(?:\n|$))*(?P<word>[A-Za-z]+|\(|/\*[!M]|\S)", re.DOTALL
)
_READING_STARTS = frozenset({"SELECT", "WITH", "VALUES", "TABLE", "SHOW", "("})


def refuse_writing_queries(db: MysqlDatabase) -> None:
    """ValidationError naming the first validation query that is not a read-only query (before anything runs).

    A query must start (after comments) with SELECT, WITH, VALUES, TABLE, SHOW or a parenthesis:
    DDL commits implicitly and a called procedure can COMMIT, either of which would end the
    read-only transaction the queries run in; everything that can start this way is refused any
    write by that transaction.
    """
    for number, text in enumerate(db.validation_queries, 1):
        match = _QUERY_START.match(text)
        word = match.group("word").upper() if match else ""
        if word not in _READING_STARTS:
            shown = "nothing" if not word else "an executable comment" if word.startswith("/*") else word
            raise ValidationError(
                f"Validation query {number} is not a read-only query (it starts with {shown}): validation queries "
                "must start with SELECT, WITH, VALUES, TABLE or SHOW."
            )


@contextmanager
def restore_server(db: MysqlDatabase, run_dir: Path) -> Iterator[MysqlServer]:
    """The server of ``db`` (the restore target), with its password in a 0600 option file in ``run_dir``.

    Validation queries that could write, and a client without sandbox mode, are refused first,
    before the server is reached.
    """
    refuse_writing_queries(db)
    password = resolve_password(db)
    client = sandboxed_client(child_env(db, password))
    with ExitStack() as stack:
        ca = stack.enter_context(trust_file(db, run_dir, RestoreError))
        options = None
        if password is not None:
            options = stack.enter_context(private_file(run_dir, "client.cnf", mysql_option_file(db, password)))
        try:
            conn = connect_mysql(db, password, ca, charset=CHARSET, autocommit=True)
        except pymysql.MySQLError as exc:
            reason = " ".join((str(exc.args[1]) if len(exc.args) > 1 else type(exc).__name__).split())
            if password:
                reason = reason.replace(password, "***")
            reason = reason[:_EXCERPT_CHARS].rstrip(".")
            raise RestoreError(
                f"Cannot connect to the MySQL server {db.host}:{db.port} as {db.user}: {reason}{tls_hint(db, reason)}."
            ) from None
        stack.callback(conn.close)
        # Only MariaDB's client has --sandbox (sandboxed_client), so its TLS options are MariaDB's.
        yield MysqlServer(db, conn, options, password, client, mysql_tool_options(db, "mariadb", ca))
