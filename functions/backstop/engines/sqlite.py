"""SQLite: snapshots through the online backup API, never a file copy.

A file copy of a database in WAL mode misses the frames still in ``-wal`` and can catch pages
mid-write; the backup API copies a consistent image under a read transaction. We open that read
transaction ourselves, with the configured busy timeout and a bounded number of attempts, so a
source locked by another writer fails clearly instead of spinning (Python's ``backup()`` retries
a busy source forever).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from pathlib import Path
from typing import BinaryIO

from backstop.config import SqliteDatabase
from backstop.engines.base import Inspection, compare_with_manifest
from backstop.errors import IntegrityError, RestoreError, SourceError, SourceLockedError, ValidationError
from backstop.manifest import IntegrityCheck, Manifest, TableStat

# Tables whose highest value is the schema version, and the column holding it.
MIGRATION_TABLES = {
    "schema_migrations": "version",
    "alembic_version": "version_num",
    "flyway_schema_history": "version",
    "knex_migrations": "name",
    "django_migrations": "id",
    "migrations": "id",
}


def quote_identifier(name: str) -> str:
    """A SQLite identifier as a quoted literal: identifiers are never interpolated raw."""
    return '"' + name.replace('"', '""') + '"'


def _connect(path: Path, timeout: float, *, read_only: bool = True) -> sqlite3.Connection:
    """Open ``path`` (read-only unless it is a file Backstop itself made), never creating it."""
    if not path.is_file():
        raise SourceError(f"SQLite database {str(path)!r} does not exist or is not a file.")
    uri = path.resolve().as_uri() + ("?mode=ro" if read_only else "?mode=rw")
    return sqlite3.connect(uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def inspect_database(path: Path, *, check: str = "full", migrations_table: str | None = None) -> Inspection:
    """Run the integrity check on ``path`` and gather table row counts and the schema version.

    The connection is read-write at the file level but ``query_only``: nothing is ever written, and
    SQLite can still remove the -wal and -shm files it creates when it closes (a read-only open
    of a WAL database would leave them behind, next to a restore target for instance).
    """
    pragma = "integrity_check" if check == "full" else "quick_check"
    try:
        with closing(_connect(path, timeout=5.0, read_only=False)) as conn:
            conn.execute("PRAGMA query_only = ON")
            # SQLite may return several problems per row, newline-joined: one line each, at most five shown.
            rows = [line for r in conn.execute(f"PRAGMA {pragma}").fetchall() for line in str(r[0]).splitlines()]
            passed = rows == ["ok"]
            detail = "ok" if passed else "; ".join(rows[:5]) + (f" (+{len(rows) - 5} more)" if len(rows) > 5 else "")
            integrity = IntegrityCheck(check=pragma, passed=passed, detail=detail)
            if not passed:
                return Inspection(integrity=integrity)
            names = [
                str(r[0])
                for r in conn.execute(
                    "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            tables = {
                name: TableStat(rows=int(conn.execute(f"SELECT count(*) FROM {quote_identifier(name)}").fetchone()[0]))
                for name in names
            }
            return Inspection(
                integrity=integrity, tables=tables, schema_version=_schema_version(conn, names, migrations_table)
            )
    except sqlite3.DatabaseError as exc:
        return Inspection(integrity=IntegrityCheck(check=pragma, passed=False, detail=f"unreadable: {exc}"))


def _schema_version(conn: sqlite3.Connection, tables: list[str], configured: str | None) -> str | None:
    candidates = [configured] if configured else [t for t in MIGRATION_TABLES if t in tables]
    for table in candidates:
        if table not in tables:
            continue
        columns = [str(r[1]) for r in conn.execute(f"PRAGMA table_info({quote_identifier(table)})")]
        column = MIGRATION_TABLES.get(table) or (columns[0] if columns else None)
        if column is None or column not in columns:
            continue
        row = conn.execute(f"SELECT max({quote_identifier(column)}) FROM {quote_identifier(table)}").fetchone()
        if row and row[0] is not None:
            return f"{table}:{row[0]}"
    return None


def run_validation_queries(path: Path, queries: tuple[str, ...], what: str) -> None:
    """Run the configured validation queries read-only; each must return a row whose first value is truthy.

    For example ``SELECT count(*) FROM schema_migrations`` fails on an empty or missing table.
    """
    if not queries:
        return
    with closing(_connect(path, timeout=5.0, read_only=False)) as conn:
        conn.execute("PRAGMA query_only = ON")
        for query in queries:
            try:
                row = conn.execute(query).fetchone()
            except sqlite3.Error as exc:
                raise IntegrityError(f"{what} fails the validation query {query!r}: {exc}.") from None
            if row is None or not row[0]:
                raise IntegrityError(f"{what} fails the validation query {query!r}: it returned {row!r}.")


class SqliteSnapshot:
    """A snapshot file in the run directory, taken under one read transaction of the source."""

    # integrity_check runs in this process beside compression, and the commit waits for it.
    cpu_bound_check = True

    def __init__(self, db: SqliteDatabase, path: Path) -> None:
        self._db = db
        self.path = path
        self.source: dict[str, str | int | None] = {}
        self.tools = {"sqlite": sqlite3.sqlite_version}
        self.warnings: list[str] = []

    def take(self) -> None:
        timeout = self._db.busy_timeout.total_seconds()
        with closing(_connect(self._db.path, timeout)) as src:
            self._begin_read(src, timeout)
            try:
                self.source = {
                    "path": str(self._db.path),
                    "journal_mode": str(src.execute("PRAGMA journal_mode").fetchone()[0]),
                    "page_size": int(src.execute("PRAGMA page_size").fetchone()[0]),
                    "page_count": int(src.execute("PRAGMA page_count").fetchone()[0]),
                    "user_version": int(src.execute("PRAGMA user_version").fetchone()[0]),
                    "application_id": int(src.execute("PRAGMA application_id").fetchone()[0]),
                }
                with closing(sqlite3.connect(self.path)) as dst:
                    # A scratch file in the run directory: no fsync and no journal (a killed run's
                    # directory is discarded), which saves a third of the snapshot time.
                    dst.execute("PRAGMA synchronous = OFF")
                    dst.execute("PRAGMA journal_mode = OFF")
                    src.backup(dst)
            except sqlite3.DatabaseError as exc:
                raise SourceError(f"SQLite database {self._db.name} cannot be copied: {exc}.") from None
            finally:
                src.execute("ROLLBACK")

    def _begin_read(self, src: sqlite3.Connection, timeout: float) -> None:
        """Open a read transaction, retrying a busy source a bounded number of times."""
        attempts = self._db.lock_retries
        for attempt in range(1, attempts + 1):
            try:
                src.execute("BEGIN")
                src.execute("SELECT count(*) FROM sqlite_schema").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if src.in_transaction:
                    src.execute("ROLLBACK")
                if not _is_busy(exc):
                    raise SourceError(f"SQLite database {self._db.name} cannot be read: {exc}.") from None
                if attempt < attempts:
                    time.sleep(min(2.0**attempt * 0.1, 5.0))
            except sqlite3.DatabaseError as exc:
                raise SourceError(f"SQLite database {self._db.name} cannot be read: {exc}.") from None
        raise SourceLockedError(
            f"SQLite database {self._db.name} stayed locked by another writer through {attempts} attempts of "
            f"{timeout:g}s; try again later or raise busy_timeout."
        )

    @contextmanager
    def _stream(self) -> Iterator[BinaryIO]:
        with self.path.open("rb") as handle:
            yield handle

    def open(self) -> AbstractContextManager[BinaryIO]:
        return self._stream()

    def raw_size(self) -> int | None:
        return self.path.stat().st_size

    def inspect(self) -> Inspection:
        return inspect_database(self.path, check=self._db.integrity_check, migrations_table=self._db.migrations_table)


class SqliteEngine:
    """Snapshots, checks and restores of one configured SQLite database."""

    name = "sqlite"
    artifact = "sqlite"

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    @contextmanager
    def _snapshot(self, run_dir: Path) -> Iterator[SqliteSnapshot]:
        snapshot = SqliteSnapshot(self._db, run_dir / "snapshot.sqlite")
        snapshot.take()
        yield snapshot

    def snapshot(self, run_dir: Path) -> AbstractContextManager[SqliteSnapshot]:
        return self._snapshot(run_dir)

    def staging_path(self, target: Path, run_dir: Path, stamp: str) -> Path:
        # Next to the target, so the final swap is a rename within one filesystem.
        return target.parent / f".{target.name}.restore-{stamp}.tmp"

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        found = inspect_database(raw, check="full", migrations_table=self._db.migrations_table)
        compare_with_manifest(found, manifest, f"Backup {manifest.backup_id}")
        run_validation_queries(raw, self._db.validation_queries, f"Backup {manifest.backup_id}")
        return found

    def describe_target(self, target: Path) -> dict[str, int] | None:
        if not target.exists():
            return None
        found = inspect_database(target, check="quick", migrations_table=self._db.migrations_table)
        return {name: stat.rows for name, stat in found.tables.items()}

    def install(self, raw: Path, target: Path, manifest: Manifest, pre_restore: Path) -> Inspection:
        had_target = target.exists()
        if had_target:
            self._preserve(target, pre_restore)
        _remove_journals(raw)
        raw.replace(target)
        _remove_journals(target)
        found = inspect_database(target, check="full", migrations_table=self._db.migrations_table)
        try:
            compare_with_manifest(found, manifest, f"Restored {target}")
            run_validation_queries(target, self._db.validation_queries, f"Restored {target}")
        except IntegrityError as exc:
            if had_target:
                self._roll_back(target, pre_restore)
                raise ValidationError(f"{exc} The previous database was put back from {pre_restore}.") from None
            target.unlink()
            raise ValidationError(str(exc)) from None
        return found

    def _preserve(self, target: Path, pre_restore: Path) -> None:
        """Copy the current target through the backup API and fold its WAL in, refusing if it is in use."""
        try:
            with closing(sqlite3.connect(target, timeout=2.0, isolation_level=None)) as conn:
                with closing(sqlite3.connect(pre_restore)) as dst:
                    conn.backup(dst)
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if busy and busy[0] == 1:
                    raise RestoreError(
                        f"{target} is in use by another process (WAL checkpoint blocked); stop it and retry."
                    )
        except sqlite3.DatabaseError as exc:
            raise RestoreError(f"The current {target} cannot be preserved before the restore: {exc}.") from None

    @staticmethod
    def _roll_back(target: Path, pre_restore: Path) -> None:
        staged = target.parent / f".{target.name}.rollback.tmp"
        with closing(sqlite3.connect(pre_restore)) as src, closing(sqlite3.connect(staged)) as dst:
            src.backup(dst)
        staged.replace(target)
        _remove_journals(target)


def _remove_journals(db: Path) -> None:
    """Delete a database's -wal, -shm and -journal files: stale ones must never meet a replaced file."""
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
