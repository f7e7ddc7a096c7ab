"""Restores into a database server (PostgreSQL): a fresh database, validated, then swapped in by renames.

The artifact is downloaded into a per-run directory and fully checked (size, SHA-256,
decompression, ``pg_restore --list`` and a full read) before the server is touched. The plan
(backup, target, current row counts, sessions that will be disconnected) goes to ``confirm``. The
backup is restored with ``pg_restore`` into ``<target>_restore_<stamp>``, whose exact row counts
must equal the manifest's and whose configured validation queries must all return a true value.
Only then, in one transaction, the target is renamed to ``<target>_pre_restore_<stamp>`` (kept)
and the fresh database takes its name. A failure at any step drops the fresh database and leaves
the target as it was.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit

from backstop.config import Config, PostgresDatabase
from backstop.engines.base import Inspection
from backstop.engines.postgres import PostgresEngine, derived_name, restore_server
from backstop.errors import BackstopError, RestoreError
from backstop.manifest import Manifest
from backstop.ports import BackupStore, Clock, Progress
from backstop.services.artifacts import fetch_artifact, resolve_backup

SCHEMES = ("postgresql://", "postgres://")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$-]{0,62}")
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")
_RESERVED = frozenset({"postgres", "template0", "template1"})


def is_server_url(text: str) -> bool:
    return text.lower().startswith(SCHEMES)


@dataclass(frozen=True)
class ServerTarget:
    host: str
    port: int
    user: str
    dbname: str

    @property
    def display(self) -> str:
        return f"postgresql://{self.user}@{self.host}:{self.port}/{self.dbname}"


def parse_target_url(url: str, default_user: str) -> ServerTarget:
    """``postgresql://[user@]host[:port]/dbname``; RestoreError in one sentence (never echoing a password)."""
    if not is_server_url(url):
        raise RestoreError("The restore target must be a postgresql://[user@]host[:port]/dbname URL.")
    parts = urlsplit(url)
    if parts.password is not None or ":" in parts.netloc.rpartition("@")[0]:
        raise RestoreError(
            "Refusing a restore URL with a password: passwords never go on the command line "
            "(configure password_env or password_secret for the database)."
        )
    if parts.query or parts.fragment:
        raise RestoreError("The restore URL takes no parameters: use postgresql://[user@]host[:port]/dbname.")
    host = parts.hostname or ""
    if not _HOST.fullmatch(host):
        raise RestoreError("The restore URL needs a host: use postgresql://[user@]host[:port]/dbname.")
    try:
        port = parts.port or 5432
    except ValueError:
        raise RestoreError("The restore URL's port is not a number between 1 and 65535.") from None
    user = unquote(parts.username) if parts.username else default_user
    if not _NAME.fullmatch(user):
        raise RestoreError(f"{user!r} in the restore URL is not a plain user name (letters, digits, _, $, -).")
    dbname = unquote(parts.path[1:]) if parts.path.startswith("/") else ""
    if not _NAME.fullmatch(dbname):
        raise RestoreError("The restore URL must end with a plain database name (letters, digits, _, $, -).")
    if dbname in _RESERVED:
        raise RestoreError(f"Refusing to restore into the server's own database {dbname}.")
    return ServerTarget(host=host, port=port, user=user, dbname=dbname)


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


@dataclass(frozen=True)
class ServerRestoreOutcome:
    plan: ServerRestorePlan
    restored: bool
    pre_restore: str | None
    inspection: Inspection | None


class ServerRestoreService:
    """Restores a verified PostgreSQL backup into a database on a server, atomically."""

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
        ref: str,
        url: str,
        *,
        dry_run: bool,
        confirm: Callable[[ServerRestorePlan], bool],
    ) -> ServerRestoreOutcome:
        """Restore ``ref`` of ``database`` into the database named by ``url``; the target is never half-restored."""
        db = self._config.database(database)
        if not isinstance(db, PostgresDatabase):
            raise RestoreError(
                f"{db.name} is a {db.engine} database: only postgres databases restore into a postgresql:// URL."
            )
        target = parse_target_url(url, db.user)
        target_db = db.model_copy(
            update={"host": target.host, "port": target.port, "user": target.user, "dbname": target.dbname}
        )
        manifest = resolve_backup(self._store, database, ref)
        stamp = self._clock().astimezone(UTC).strftime("%Y%m%dt%H%M%Sz")
        fresh = derived_name(target.dbname, f"_restore_{stamp}")
        pre_restore = derived_name(target.dbname, f"_pre_restore_{stamp}")
        run_dir = Path(tempfile.mkdtemp(prefix="backstop-restore-", dir=self._config.work_dir))
        try:
            raw = run_dir / "restore.pgdump"
            fetch_artifact(self._store, manifest, raw, self._progress)
            PostgresEngine(target_db).inspect_artifact(raw, manifest, run_dir)
            with restore_server(target_db, run_dir) as server:
                exists = server.exists(target.dbname)
                plan = ServerRestorePlan(
                    manifest=manifest,
                    target=target,
                    target_exists=exists,
                    current=server.describe(target.dbname),
                    sessions=server.sessions(target.dbname) if exists else 0,
                    fresh=fresh,
                    pre_restore=pre_restore if exists else None,
                )
                if dry_run or not confirm(plan):
                    return ServerRestoreOutcome(plan=plan, restored=False, pre_restore=None, inspection=None)
                if server.exists(fresh) or server.exists(pre_restore):
                    raise RestoreError(f"A restore into {target.dbname} is already under way ({fresh} exists).")
                server.create_fresh(fresh, like=target.dbname)
                try:
                    server.pg_restore(raw, fresh, run_dir)
                    inspection = server.validate(fresh, manifest)
                    kept = server.swap(fresh, target.dbname, pre_restore)
                except BaseException as exc:
                    # Before the swap committed the fresh database still has its own name; after it, the
                    # name is free and this drops nothing.
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
                return ServerRestoreOutcome(
                    plan=plan, restored=True, pre_restore=pre_restore if kept else None, inspection=inspection
                )
        finally:
            shutil.rmtree(run_dir, ignore_errors=True)
