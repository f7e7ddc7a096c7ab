"""Pre-restore copies: what a restore replaced, kept beside its target, pruned by ``restore.keep_pre_restore``.

A restore keeps what it replaces, named by the restore's time:

- a local target: ``<target>.pre-restore-<YYYYMMDDTHHMMSSZ>``, a file or directory beside it;
- a server target: ``<dbname>_pre_restore_<yyyymmddthhmmssz>``, a database on the same server.

Only the copies of restores that completed are ever pruned, and how a completed one is told apart:

- local: once the new target is installed and validated, the restore writes a marker beside the
  copy, ``.<copy name>.done``. A copy without one belongs to a restore still running, or one that
  failed (its copy may hold the only good data), or predates markers: it is never pruned.
- server: a restore loads into its fresh database ``<dbname>_restore_<time>`` before the copy
  exists, and that database is gone only once the restore succeeded (PostgreSQL renames it into
  the target in the same transaction that makes the copy; MySQL drops it last). A copy whose
  fresh database still exists is never pruned.

The policy (``KeepPreRestore``): of the completed copies, newest first, the newest ``count`` no
older than ``days`` are kept, and the newest one whatever its age; of the others, those older than
the restore that prunes are removed. A name that only resembles the pattern (another target's
copies, ``orders.db.pre-restore-old``, ``<dbname>_pre_restore_manual``) is never touched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from backstop.config import AnyDatabase, KeepPreRestore, MysqlDatabase, PostgresDatabase

log = logging.getLogger(__name__)

LOCAL_STAMP = "%Y%m%dT%H%M%SZ"
SERVER_STAMP = "%Y%m%dt%H%M%Sz"
_STAMP_LENGTH = 16
_LOCAL_PATTERN = r"\.pre-restore-(\d{8}T\d{6}Z)"
_SERVER_PATTERN = r"(\d{8}t\d{6}z)"
_MARKER_SUFFIX = ".done"


@dataclass(frozen=True)
class PreRestoreCopy:
    """One copy a restore kept: its file, directory or database name, when it was made, and whether its
    restore completed (only then may it be pruned)."""

    name: str
    taken_at: datetime
    completed: bool
    kind: Literal["file", "directory", "link", "other", "database"] = "database"


@dataclass(frozen=True)
class Pruning:
    """What pruning removed, and what it could not (a warning each; the restore itself succeeded)."""

    pruned: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def choose_pruned(
    copies: Sequence[PreRestoreCopy], policy: KeepPreRestore, now: datetime, current: datetime
) -> list[PreRestoreCopy]:
    """The copies ``policy`` lets go, oldest first: completed, older than ``current`` (the restore that
    prunes), and neither the newest completed copy nor among the newest ``count`` no older than ``days``."""
    completed = sorted((c for c in copies if c.completed), key=lambda c: c.taken_at, reverse=True)
    oldest = None if policy.days is None else now - timedelta(days=policy.days)
    kept = {
        c.name
        for rank, c in enumerate(completed)
        if rank == 0 or (rank < policy.count and (oldest is None or c.taken_at >= oldest))
    }
    return sorted((c for c in completed if c.name not in kept and c.taken_at < current), key=lambda c: c.taken_at)


# -- local targets: files and directories beside the target ---------------------------------------


def local_copy(target: Path, at: datetime) -> Path:
    """Where a restore into ``target`` at ``at`` keeps what it replaces."""
    return target.with_name(f"{target.name}.pre-restore-{at.astimezone(UTC).strftime(LOCAL_STAMP)}")


def _marker(copy: Path) -> Path:
    return copy.with_name(f".{copy.name}{_MARKER_SUFFIX}")


def mark_completed(copy: Path, backup_id: str, at: datetime) -> None:
    """Record that the restore which kept ``copy`` completed: from now on the policy may prune it."""
    record = {"restored": backup_id, "completed_at": at.astimezone(UTC).isoformat()}
    marker = _marker(copy)
    staged = marker.with_name(marker.name + ".tmp")
    staged.write_text(json.dumps(record) + "\n", encoding="utf-8")
    staged.replace(marker)


def local_copies(target: Path) -> list[PreRestoreCopy]:
    """The copies restores kept of ``target``, oldest first (exactly ``<name>.pre-restore-<time>``, nothing else)."""
    pattern = re.compile(re.escape(target.name) + _LOCAL_PATTERN)
    try:
        entries = list(os.scandir(target.parent))
    except FileNotFoundError:
        return []
    found = []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        taken = _parse(match[1], LOCAL_STAMP) if match else None
        if taken is None:
            continue
        try:
            mode = entry.stat(follow_symlinks=False).st_mode
        except FileNotFoundError:
            continue  # pruned by another restore meanwhile
        kind: Literal["file", "directory", "link", "other"] = (
            "link"
            if stat.S_ISLNK(mode)
            else "directory"
            if stat.S_ISDIR(mode)
            else "file"
            if stat.S_ISREG(mode)
            else "other"
        )
        completed = _is_plain_file(_marker(Path(entry.path)))
        found.append(PreRestoreCopy(entry.name, taken, completed, kind))
    return sorted(found, key=lambda c: c.taken_at)


def prune_local(target: Path, policy: KeepPreRestore, now: datetime, current: datetime) -> Pruning:
    """Remove the copies of ``target`` that ``policy`` lets go (see the module); never raises."""
    pruned, warnings = [], []
    try:
        copies = local_copies(target)
    except OSError as exc:
        return Pruning(warnings=(f"the pre-restore copies of {target} cannot be listed: {exc.strerror}",))
    for copy in choose_pruned(copies, policy, now, current):
        path = target.parent / copy.name
        if copy.kind not in ("file", "directory"):
            warnings.append(f"{path} is not a file or directory a restore made; left in place")
            continue
        try:
            if copy.kind == "directory":
                shutil.rmtree(path)
            else:
                path.unlink()
            _marker(path).unlink(missing_ok=True)
        except OSError as exc:
            warnings.append(f"{path} cannot be removed: {exc.strerror}")
            continue
        pruned.append(str(path))
    for warning in warnings:
        log.warning("pre-restore pruning: %s", warning)
    return Pruning(tuple(pruned), tuple(warnings))


def _is_plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _parse(stamp: str, shape: str) -> datetime | None:
    try:
        return datetime.strptime(stamp, shape).replace(tzinfo=UTC)
    except ValueError:
        return None


# -- server targets: databases beside the target ---------------------------------------------------


class CopyServer(Protocol):
    """What pruning needs of a server (PostgresServer and MysqlServer provide it)."""

    def databases(self, prefix: str) -> list[str]: ...
    def sessions(self, dbname: str) -> int: ...
    def drop(self, dbname: str) -> None: ...


def server_copies(names: Sequence[str], copy_prefix: str, fresh_prefix: str) -> list[PreRestoreCopy]:
    """The copies among the database ``names`` (``<copy_prefix><time>``), oldest first; one is completed when
    its restore's fresh database ``<fresh_prefix><time>`` is not among them."""
    pattern = re.compile(re.escape(copy_prefix) + _SERVER_PATTERN)
    present = set(names)
    found = []
    for name in names:
        match = pattern.fullmatch(name)
        stamp = match[1] if match else ""
        taken = _parse(stamp, SERVER_STAMP)
        if taken is not None:
            found.append(PreRestoreCopy(name, taken, completed=fresh_prefix + stamp not in present))
    return sorted(found, key=lambda c: c.taken_at)


def prune_server(
    server: CopyServer, dbname: str, copy: str, fresh: str, policy: KeepPreRestore, now: datetime
) -> Pruning:
    """Drop the pre-restore databases of ``dbname`` that ``policy`` lets go, after the restore that kept ``copy``
    (and loaded into ``fresh``) succeeded; never raises.

    Nothing is pruned when the names restores derive cut ``dbname`` short (another database on the
    server may begin alike), and a copy someone is connected to is left for the next restore.
    """
    copy_prefix, fresh_prefix = copy[:-_STAMP_LENGTH], fresh[:-_STAMP_LENGTH]
    kept_name = copy_prefix[: -len("_pre_restore_")]
    if kept_name != dbname:
        warning = (
            f"the pre-restore databases of {dbname} are named after its first {len(kept_name)} characters, "
            "which another database may share: none are pruned (drop old ones by hand)"
        )
        log.warning("pre-restore pruning: %s", warning)
        return Pruning(warnings=(warning,))
    current = _parse(copy[-_STAMP_LENGTH:], SERVER_STAMP)
    pruned, warnings = [], []
    try:
        copies = server_copies(server.databases(dbname), copy_prefix, fresh_prefix)
        if current is None:
            raise ValueError(f"{copy} does not end in a restore's time")
        for old in choose_pruned(copies, policy, now, current):
            if server.sessions(old.name):
                warnings.append(f"{old.name} is in use; left in place until a later restore")
                continue
            server.drop(old.name)
            pruned.append(old.name)
    except Exception as exc:  # noqa: BLE001 - the restore succeeded: a pruning failure is a warning, never its outcome
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        warnings.append(f"pruning the pre-restore databases of {dbname} stopped: {reason}")
    for warning in warnings:
        log.warning("pre-restore pruning: %s", warning)
    return Pruning(tuple(pruned), tuple(warnings))


def target_copies(target: AnyDatabase, work_dir: Path | None = None) -> list[PreRestoreCopy]:
    """The pre-restore copies of one restore target, oldest first: files or directories beside a local
    target, databases beside a server one (listed over a connection to its server, as a restore makes)."""
    if not isinstance(target, PostgresDatabase | MysqlDatabase):
        return local_copies(Path(target.path))
    from backstop.config.targets import kept_prefix

    if isinstance(target, MysqlDatabase):
        from backstop.engines.mysql_restore import restore_server as mysql_server

        server: AbstractContextManager[CopyServer] = mysql_server(target, run_dir := _run_dir(work_dir))
    else:
        from backstop.engines.postgres import restore_server as postgres_server

        server = postgres_server(target, run_dir := _run_dir(work_dir))
    try:
        copy_prefix = kept_prefix(target)
        with server as connected:  # the copies' names, and the fresh ones', begin with the name as they cut it
            names = connected.databases(copy_prefix[: -len("_pre_restore_")])
        return server_copies(names, copy_prefix, kept_prefix(target, "_restore_"))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _run_dir(work_dir: Path | None) -> Path:
    return Path(tempfile.mkdtemp(prefix="backstop-list-", dir=work_dir))
