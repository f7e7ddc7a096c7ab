"""Restores into a database server (PostgreSQL, MySQL/MariaDB): a fresh database, validated, then swapped in.

The artifact is downloaded into a per-run directory and checked against its manifest before the
server is touched:

- MySQL/MariaDB: fully (size, SHA-256 of both sides, decompression, the dump's trailer and row
  counts, and no line the client would run itself: ``UnsafeArchiveError``), decompressed into a file;
- PostgreSQL: the stored bytes (size and SHA-256), kept compressed. They are decompressed once,
  during the load: the same stream feeds the restore and its checks (raw size and SHA-256,
  ``pg_restore --list`` against the manifest's table of contents, a full read), and the load
  counts only if every one of them passed. No raw archive is written, and the checks cost no pass
  of their own. A dry run, which loads nothing, runs the checks alone.

A PostgreSQL restore keeps owners: before the server is touched, the beginning of the archive (its
table of contents) says who owns what, and a role missing on the server, or one the restore role
cannot act as, is refused then (``engines/postgres.py``).

The plan (backup, target, current row counts, sessions that will be disconnected) goes to
``confirm``. The backup is loaded into ``<target>_restore_<stamp>``, whose exact row counts must
equal the manifest's and whose configured validation queries must all return a true value (in a
read-only transaction, rolled back; on PostgreSQL as ``app_role`` when one is configured). Only
then is it swapped in, keeping the old target as ``<target>_pre_restore_<stamp>``:

- PostgreSQL: in one transaction the target is renamed aside and the fresh database takes its name;
- MySQL/MariaDB: one ``RENAME TABLE`` moves every table (see ``engines/mysql_restore.py`` for what
  is carried around it), and the target is validated again before the swap counts as done.

A failure at any step drops the fresh database and leaves the target as it was.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from backstop.config import Config, MysqlDatabase, PostgresDatabase, ServerDatabase
from backstop.config.targets import derived_name, tls_moved_to
from backstop.engines.base import Inspection
from backstop.errors import BackstopError, ManualInterventionError, RestoreError
from backstop.manifest import Manifest
from backstop.pipeline import CHUNK, Sink, decompress_stream
from backstop.ports import BackupStore, Clock, Progress
from backstop.services.artifacts import expected_digest, fetch_artifact, resolve_backup
from backstop.services.download import download
from backstop.services.pre_restore import Pruning, prune_server

if TYPE_CHECKING:
    from backstop.engines.postgres import ArchiveFeeder, ArchiveToc, PostgresServer


@dataclass(frozen=True)
class _Dialect:
    scheme: str
    schemes: tuple[str, ...]
    default_port: int
    reserved: frozenset[str]


_POSTGRES = _Dialect(
    "postgresql", ("postgresql://", "postgres://"), 5432, frozenset({"postgres", "template0", "template1"})
)
_MYSQL = _Dialect(
    "mysql", ("mysql://", "mariadb://"), 3306, frozenset({"mysql", "information_schema", "performance_schema", "sys"})
)
SCHEMES = _POSTGRES.schemes + _MYSQL.schemes
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


def is_server_url(text: str) -> bool:
    return text.lower().startswith(SCHEMES)


@dataclass(frozen=True)
class ServerTarget:
    host: str
    port: int
    user: str
    dbname: str
    scheme: str = "postgresql"

    @property
    def display(self) -> str:
        return f"{self.scheme}://{self.user}@{self.host}:{self.port}/{self.dbname}"


def parse_target_url(url: str, default_user: str, engine: str = "postgres") -> ServerTarget:
    """``<scheme>://[user@]host[:port]/dbname``; RestoreError in one sentence (never echoing a password)."""
    dialect = _MYSQL if engine == "mysql" else _POSTGRES
    shape = f"{dialect.scheme}://[user@]host[:port]/dbname"
    if not url.lower().startswith(dialect.schemes):
        raise RestoreError(f"The restore target must be a {shape} URL.")
    parts = urlsplit(url)
    if parts.password is not None or ":" in parts.netloc.rpartition("@")[0]:
        raise RestoreError(
            "Refusing a restore URL with a password: passwords never go on the command line "
            "(configure password_env or password_secret for the database)."
        )
    if parts.query or parts.fragment:
        raise RestoreError(f"The restore URL takes no parameters: use {shape}.")
    host = parts.hostname or ""
    if not _HOST.fullmatch(host):
        raise RestoreError(f"The restore URL needs a host: use {shape}.")
    try:
        port = parts.port or dialect.default_port
    except ValueError:
        raise RestoreError("The restore URL's port is not a number between 1 and 65535.") from None
    user = unquote(parts.username) if parts.username else default_user
    if not _NAME.fullmatch(user):
        raise RestoreError(f"{user!r} in the restore URL is not a plain user name (letters, digits, _, $, -).")
    dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not _NAME.fullmatch(dbname):
        raise RestoreError("The restore URL must end with a plain database name (letters, digits, _, $, -).")
    if dbname.lower() in dialect.reserved:
        raise RestoreError(f"Refusing to restore into the server's own database {dbname}.")
    return ServerTarget(host=host, port=port, user=user, dbname=dbname, scheme=dialect.scheme)


class _Server(Protocol):
    """What the service needs of a server, whatever its engine."""

    def exists(self, dbname: str) -> bool: ...
    def sessions(self, dbname: str) -> int: ...
    def describe(self, dbname: str) -> dict[str, int] | None: ...
    def create_fresh(self, fresh: str, like: str) -> None: ...
    def drop(self, dbname: str) -> None: ...
    def load(self, artifact: Path, dbname: str, run_dir: Path) -> None: ...
    def validate(self, dbname: str, manifest: Manifest) -> Inspection: ...
    def swap(self, fresh: str, target: str, pre_restore: str, manifest: Manifest) -> tuple[bool, list[str]]: ...
    def databases(self, prefix: str) -> list[str]: ...


def _unpack(stored: Path, manifest: Manifest, sink: Sink) -> None:
    """Decompress the downloaded stored copy into ``sink``, with every check ``fetch_artifact`` makes on the way.

    The stored bytes are hashed again as they are read (what the load gets is what was verified),
    the output is bounded by the recorded raw size, and the raw SHA-256 must equal the manifest's.
    """
    with stored.open("rb") as handle:
        decompress_stream(
            iter(lambda: handle.read(CHUNK), b""),
            sink,
            algorithm=manifest.compression.algorithm,
            expected=expected_digest(manifest),
            what=f"Backup {manifest.backup_id}",
        )


def _check_archive(db: PostgresDatabase, stored: Path, manifest: Manifest, run_dir: Path) -> None:
    """The PostgreSQL archive's checks on their own (a dry run loads nothing): IntegrityError naming a failure."""
    from backstop.engines.postgres import PostgresEngine

    with PostgresEngine(db).artifact_check(manifest, run_dir) as check:
        _unpack(stored, manifest, check.feed)


class _EnoughRead(Exception):
    """The reader of an archive's beginning has what it needs."""


def _beginning_of(stored: Path, manifest: Manifest) -> ArchiveFeeder:
    """Decompresses the stored copy into a reader until it has what it needs (the load checks every byte later)."""

    def feed(read: Callable[[bytes], bool]) -> None:
        def sink(chunk: bytes) -> None:
            if not read(chunk):
                raise _EnoughRead

        with suppress(_EnoughRead):
            _unpack(stored, manifest, sink)

    return feed


class _PostgresTarget:
    """PostgresServer seen through ``_Server``: it loads the stored copy, checking it as it goes, and keeps owners."""

    def __init__(self, server: PostgresServer, manifest: Manifest, toc: ArchiveToc) -> None:
        self._server = server
        self._manifest = manifest
        self._toc = toc
        self._warnings: list[str] = []
        self.exists = server.exists
        self.sessions = server.sessions
        self.describe = server.describe
        self.drop = server.drop
        self.validate = server.validate

    def create_fresh(self, fresh: str, like: str) -> None:
        """The fresh database, owned by the owner of the backed-up database."""
        self._server.create_fresh(fresh, like, owner=self._toc.database_owner)

    def load(self, artifact: Path, dbname: str, run_dir: Path) -> None:
        """Decompress the stored copy ``artifact`` once, into ``pg_restore`` into ``dbname`` and its checks together.

        The checks' verdict comes first when the stream ends: a checksum, size or ``pg_restore
        --list``/full-read failure stops the restore and is what is raised, so the load never
        counts unless the archive passed everything the file check would have.
        """
        from backstop.engines.postgres import PostgresEngine

        manifest = self._manifest
        checking = PostgresEngine(self._server.db).artifact_check(manifest, run_dir)
        with self._server.pg_restore(dbname, run_dir) as restore, checking as check:

            def both(chunk: bytes) -> None:
                restore(chunk)
                check.feed(chunk)

            _unpack(artifact, manifest, both)
        # The database's own settings, comment and grants: what could not be restored is said, not fatal.
        self._warnings = self._server.load_notes + self._server.restore_database(dbname, self._toc)

    def swap(self, fresh: str, target: str, pre_restore: str, manifest: Manifest) -> tuple[bool, list[str]]:
        return self._server.swap(fresh, target, pre_restore), list(self._warnings)

    def databases(self, prefix: str) -> list[str]:
        return self._server.databases(prefix)

    def plan_notes(self) -> list[str]:
        from backstop.engines.postgres import unrestorable_statements

        return unrestorable_statements(self._toc)


@contextmanager
def _postgres_server(db: PostgresDatabase, manifest: Manifest, artifact: Path, run_dir: Path) -> Iterator[_Server]:
    from backstop.engines.postgres import read_archive_toc, restore_server

    toc = read_archive_toc(_beginning_of(artifact, manifest), run_dir, f"Backup {manifest.backup_id}")
    with restore_server(db, run_dir) as server:
        server.check_owners(toc, db.dbname)
        yield _PostgresTarget(server, manifest, toc)


def _open_server(
    db: ServerDatabase, manifest: Manifest, artifact: Path, run_dir: Path
) -> AbstractContextManager[_Server]:
    if isinstance(db, MysqlDatabase):
        from backstop.engines import mysql_restore

        return mysql_restore.restore_server(db, run_dir)
    return _postgres_server(db, manifest, artifact, run_dir)


@dataclass(frozen=True)
class ServerRestorePlan:
    """What a server restore will do, shown before anything is touched."""

    manifest: Manifest
    target: ServerTarget
    target_exists: bool
    current: dict[str, int] | None
    sessions: int
    fresh: str
    pre_restore: str | None
    notes: tuple[str, ...] = ()
    """What the restore is known, before it runs, not to bring back (PostgreSQL database-level statements)."""


@dataclass(frozen=True)
class ServerRestoreOutcome:
    plan: ServerRestorePlan
    restored: bool
    pre_restore: str | None
    inspection: Inspection | None
    warnings: tuple[str, ...] = ()
    pruned: tuple[str, ...] = ()
    """Older pre-restore databases dropped by ``restore.keep_pre_restore`` after this restore succeeded."""


class ServerRestoreService:
    """Restores a verified PostgreSQL or MySQL backup into a database on a server, atomically."""

    def __init__(
        self,
        config: Config,
        store: BackupStore,
        *,
        clock: Clock = lambda: datetime.now(UTC),
        progress: Progress | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._progress = progress

    def restore(
        self,
        database: str,
        ref: str | Manifest,
        url: str,
        *,
        dry_run: bool,
        confirm: Callable[[ServerRestorePlan], bool],
    ) -> ServerRestoreOutcome:
        """Restore ``ref`` of ``database`` into the database named by ``url``; the target is never half-restored."""
        db = self._config.database(database)
        if not isinstance(db, PostgresDatabase | MysqlDatabase):
            raise RestoreError(
                f"{db.name} is a {db.engine} database: only postgres and mysql databases restore into a "
                "database URL; restore into a path instead."
            )
        target = parse_target_url(url, db.user, db.engine)
        target_db = db.model_copy(
            update={
                "host": target.host,
                "port": target.port,
                "user": target.user,
                "dbname": target.dbname,
                **tls_moved_to(db, target.host),
            }
        )
        return self.restore_into(database, ref, target_db, dry_run=dry_run, confirm=confirm)

    def restore_into(
        self,
        database: str,
        ref: str | Manifest,
        target_db: ServerDatabase,
        *,
        dry_run: bool,
        confirm: Callable[[ServerRestorePlan], bool],
    ) -> ServerRestoreOutcome:
        """Restore ``ref`` of ``database`` into the database ``target_db`` names (its host, port, dbname, password)."""
        db = self._config.database(database)
        if db.engine != target_db.engine:
            raise RestoreError(f"{db.name} is a {db.engine} database: it cannot restore into {target_db.engine}.")
        target = ServerTarget(
            host=target_db.host,
            port=target_db.port,
            user=target_db.user,
            dbname=target_db.dbname,
            scheme="mysql" if isinstance(target_db, MysqlDatabase) else "postgresql",
        )
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dt%H%M%Sz")
        fresh = derived_name(target_db, target.dbname, f"_restore_{stamp}")
        pre_restore = derived_name(target_db, target.dbname, f"_pre_restore_{stamp}")
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-restore-", dir=self._config.work_dir))
        try:
            if isinstance(target_db, MysqlDatabase):
                from backstop.engines.mysql import MysqlEngine

                manifest = resolve_backup(self._store, database, ref)
                artifact = run_dir / "restore.sql"
                fetch_artifact(self._store, manifest, artifact, self._progress)
                MysqlEngine(target_db).inspect_artifact(artifact, manifest, run_dir)
            else:
                # Only the stored bytes, their SHA-256 checked; the load decompresses and checks the rest.
                artifact = run_dir / "restore.pgdump.stored"
                manifest = download(self._store, database, ref, artifact, decompress=False, progress=self._progress)
                if dry_run:
                    _check_archive(target_db, artifact, manifest, run_dir)
            with _open_server(target_db, manifest, artifact, run_dir) as server:
                exists = server.exists(target.dbname)
                plan = ServerRestorePlan(
                    manifest=manifest,
                    target=target,
                    target_exists=exists,
                    current=server.describe(target.dbname),
                    sessions=server.sessions(target.dbname) if exists else 0,
                    fresh=fresh,
                    pre_restore=pre_restore if exists else None,
                    notes=tuple(server.plan_notes()) if isinstance(server, _PostgresTarget) else (),
                )
                if dry_run or not confirm(plan):
                    return ServerRestoreOutcome(plan=plan, restored=False, pre_restore=None, inspection=None)
                if server.exists(fresh) or server.exists(pre_restore):
                    raise RestoreError(f"A restore into {target.dbname} is already under way ({fresh} exists).")
                server.create_fresh(fresh, like=target.dbname)
                try:
                    server.load(artifact, fresh, run_dir)
                    inspection = server.validate(fresh, manifest)
                    kept, warnings = server.swap(fresh, target.dbname, pre_restore, manifest)
                except ManualInterventionError:
                    raise  # the data is where the message says: drop nothing
                except BaseException as exc:
                    # Before the swap the fresh database holds the backup; a swap that failed has put
                    # everything back, and after a PostgreSQL swap the name is free.
                    try:
                        server.drop(fresh)
                    except Exception:  # the original failure is the one to report
                        if isinstance(exc, BackstopError):
                            raise type(exc)(
                                f"{exc} The target {target.dbname} was not touched, but the fresh database "
                                f"{fresh} could not be dropped; drop it by hand."
                            ) from None
                        raise
                    if isinstance(exc, BackstopError):
                        raise type(exc)(f"{exc} The target {target.dbname} was not touched.") from None
                    raise
                pruning = Pruning()
                if kept:  # the target's older copies, by restore.keep_pre_restore (services/pre_restore.py)
                    policy = self._config.restore.keep_pre_restore
                    pruning = prune_server(server, target.dbname, pre_restore, fresh, policy, self._clock())
                return ServerRestoreOutcome(
                    plan=plan,
                    restored=True,
                    pre_restore=pre_restore if kept else None,
                    inspection=inspection,
                    warnings=(*warnings, *pruning.warnings),
                    pruned=pruning.pruned,
                )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
