"""Plain directories, archived as a POSIX tar stream and extracted safely.

The tar is produced by a thread writing into a pipe, so a directory of any size streams through
the pipeline without a temporary archive. A failure while producing (a file vanishing, permission
denied) is raised by the reader before it reports end of stream, so a partial archive is never
completed as an upload. Sockets, FIFOs and devices, and links that lead out of the tree, are left
out with a warning in the manifest.

An archive is untrusted input: extraction (``_Extraction``, for restore and verify alike) resolves
every member and link against the tree as it really is, and refuses the whole archive on the first
one that could reach outside its directory.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fnmatch
import os
import platform
import shutil
import stat
import tarfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from backstop.config import FilesDatabase
from backstop.engines.base import Inspection
from backstop.errors import (
    BackstopError,
    IntegrityError,
    ManualInterventionError,
    RestoreError,
    SourceError,
    UnsafeArchiveError,
    ValidationError,
)
from backstop.manifest import IntegrityCheck, Manifest

_CHECK = "tar-members"


def _passed(detail: str) -> IntegrityCheck:
    return IntegrityCheck(check=_CHECK, passed=True, detail=detail)


class _ProducerReader:
    """The read end of the tar pipe; raises the producer's error instead of a clean end of stream."""

    def __init__(self, fd: int, producer: _TarProducer) -> None:
        self._file = os.fdopen(fd, "rb")
        self._producer = producer

    def read(self, size: int = -1) -> bytes:
        data = self._file.read(size)
        if not data:
            self._producer.join()
            if self._producer.error is not None:
                raise self._producer.error
        return data

    def close(self) -> None:
        self._file.close()
        self._producer.join()


class _TarProducer(threading.Thread):
    def __init__(self, root: Path, exclude: tuple[str, ...], fd: int) -> None:
        super().__init__(name="tar-producer", daemon=True)
        self._root = root
        self._exclude = exclude
        self._fd = fd
        self.error: BaseException | None = None
        self.skipped: list[str] = []
        self.special: list[tuple[str, str]] = []  # (relative path, what it is)
        self.files = 0
        self.dirs = 0
        self.bytes = 0

    def _excluded(self, relative: str) -> bool:
        return any(fnmatch.fnmatch(relative, pattern) for pattern in self._exclude)

    def run(self) -> None:
        try:
            with (
                os.fdopen(self._fd, "wb") as pipe,
                tarfile.open(fileobj=pipe, mode="w|", format=tarfile.PAX_FORMAT) as tar,
            ):
                paths = sorted(self._walk())
                escaping = self._escaping_links([path for path in paths if path.is_symlink()])
                for path in paths:
                    relative = path.relative_to(self._root).as_posix()
                    info = tar.gettarinfo(str(path), arcname=relative)
                    if info is None or info.type in _SPECIAL:  # gettarinfo has no type for a socket
                        self.special.append((relative, _SPECIAL[info.type] if info else "a socket"))
                        continue
                    if info.islnk():  # a second name of a hard-linked file: archive its content again
                        info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.stat().st_size
                    if path in escaping:
                        self.skipped.append(f"{relative} -> {info.linkname}")
                        continue
                    if info.isfile():
                        with path.open("rb") as handle:
                            tar.addfile(info, handle)
                        self.files += 1
                        self.bytes += info.size
                    elif info.isdir() or info.issym():
                        tar.addfile(info)
                        self.dirs += int(info.isdir())
        except BrokenPipeError:
            self.error = SourceError("The archive of the directory was abandoned before it was complete.")
        except OSError as exc:
            self.error = SourceError(
                f"Directory {str(self._root)!r} cannot be archived: {exc.strerror} ({exc.filename})."
            )
        except Exception as exc:  # noqa: BLE001  # any producer failure must reach the reader, not vanish with the thread
            self.error = SourceError(f"Directory {str(self._root)!r} cannot be archived: {exc}.")

    def _escaping_links(self, links: list[Path]) -> set[Path]:
        """The symlinks a restore would refuse: those that lead out of the tree, resolved as a restore resolves them.

        Excluded paths are taken as absent, as they will be in the restored tree. Leaving out the links found
        here changes nothing for the others: a link that passes through one of them passes outside the tree.
        """

        def absent(parts: Parts) -> bool:
            return any(self._excluded("/".join(parts[:n])) for n in range(1, len(parts) + 1))

        return {path for path in links if _leaves(self._root, path.relative_to(self._root).parts, absent)}

    def _walk(self) -> Iterator[Path]:
        for current, dirs, files in os.walk(self._root, onerror=self._raise):
            base = Path(current)
            for name in dirs + files:
                path = base / name
                if not self._excluded(path.relative_to(self._root).as_posix()):
                    yield path
            dirs[:] = [d for d in dirs if not self._excluded((base / d).relative_to(self._root).as_posix())]

    @staticmethod
    def _raise(error: OSError) -> None:
        raise error


class DirectorySnapshot:
    """A directory read as a tar stream; its statistics are known once the stream is read."""

    # The archive is checked by the producer as it is read: nothing left to favour.
    cpu_bound_check = False

    def __init__(self, db: FilesDatabase) -> None:
        self._db = db
        self.source: dict[str, str | int | None] = {"path": str(db.path)}
        self.tools = {"tar": f"python {platform.python_version()} tarfile (pax)"}
        self.warnings: list[str] = []
        self._producer: _TarProducer | None = None

    @contextmanager
    def _stream(self) -> Iterator[BinaryIO]:
        read_fd, write_fd = os.pipe()
        producer = _TarProducer(self._db.path, self._db.exclude, write_fd)
        self._producer = producer
        reader = _ProducerReader(read_fd, producer)
        producer.start()
        try:
            yield reader  # type: ignore[misc]  # a minimal binary reader: read() and close()
        finally:
            reader.close()

    def open(self) -> AbstractContextManager[BinaryIO]:
        if not self._db.path.is_dir():
            raise SourceError(f"Directory {str(self._db.path)!r} does not exist.")
        return self._stream()

    def raw_size(self) -> int | None:
        return None

    def inspect(self) -> Inspection:
        """The archive is checked as it is produced; this reports what went in (call after the stream)."""
        producer = self._producer
        if producer is None:
            raise IntegrityError("The directory was not archived.")
        producer.join()
        if producer.error is not None:
            return Inspection(integrity=IntegrityCheck(check=_CHECK, passed=False, detail=str(producer.error)))
        stats = {"files": producer.files, "directories": producer.dirs, "bytes": producer.bytes}
        self.source.update(stats)
        # Links out of the tree are not archived: a restore could never follow them safely. Nor are
        # sockets, FIFOs and devices: they hold no data, and a restore refuses them.
        self.warnings.extend(f"symlink {link} points outside the directory; not archived" for link in producer.skipped)
        self.warnings.extend(
            f"{path} is {kind}, not a file or directory; not archived" for path, kind in producer.special
        )
        return Inspection(
            integrity=IntegrityCheck(
                check=_CHECK, passed=True, detail=f"{producer.files} files, {producer.bytes} bytes"
            ),
            stats=stats,
        )


Parts = tuple[str, ...]

# Bounds of what a restored tree may hold, Linux's own: a path (with its NUL) and the links one lookup follows.
_PATH_MAX = 4096
_MAX_LINK_HOPS = 40
_SPECIAL = {tarfile.CHRTYPE: "a character device", tarfile.BLKTYPE: "a block device", tarfile.FIFOTYPE: "a FIFO"}
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class _TooManyLinks(Exception):
    """A link whose resolution follows more than _MAX_LINK_HOPS links (a loop, or a chain built to exhaust)."""


def _link_destination(root: Path, link: Parts, absent: Callable[[Parts], bool]) -> Parts | None:
    """Where the symlink ``link`` (a path under ``root``) really leads, relative to ``root``; None if outside it.

    The target is walked as the kernel walks it, one component at a time against the tree as it is
    (lstat, never os.path.realpath, which silently stops resolving a path that grew too long), following
    at most _MAX_LINK_HOPS links. Every component kept is a real directory, so ``..`` is exact. From a
    component that does not exist (or that ``absent`` says will not), the rest is taken lexically: that
    is where the link leads if it is ever created. OSError (a path too long to look up) and
    _TooManyLinks mean the destination cannot be proven.
    """
    here = list(link[:-1])
    pending = deque(str(root.joinpath(*link).readlink()).split("/"))
    if pending[0] == "":
        return None
    hops, walking = 0, True
    while pending:
        name = pending.popleft()
        if name in ("", "."):
            continue
        if name == "..":
            if not here:
                return None
            here.pop()
            continue
        here.append(name)
        if not walking:
            continue
        if absent(tuple(here)):
            walking = False
            continue
        path = root.joinpath(*here)
        try:
            mode = path.lstat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            walking = False
            continue
        if stat.S_ISLNK(mode):
            hops += 1
            if hops > _MAX_LINK_HOPS:
                raise _TooManyLinks
            content = str(path.readlink())
            if content.startswith("/"):
                return None
            here.pop()
            pending.extendleft(reversed(content.split("/")))
        elif not stat.S_ISDIR(mode):
            walking = False  # a file named as a directory: nothing can be below it
    return tuple(here)


def _leaves(root: Path, link: Parts, absent: Callable[[Parts], bool]) -> bool:
    """Whether a source link leads out of ``root``, or cannot be shown not to."""
    try:
        return _link_destination(root, link, absent) is None
    except (OSError, _TooManyLinks):
        return True


def _check_link_target(name: str, target: str) -> None:
    if target.startswith("/"):
        raise _refused(name, f"links to the absolute path {target!r}")
    if not target or "\0" in target or len(os.fsencode(target)) >= _PATH_MAX:
        raise _refused(name, "has an empty, NUL-holding or over-long link target")


def _refused(name: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Archive member {name!r} {why}; refused.")


@contextmanager
def _named(name: str) -> Iterator[None]:
    """OSError while extracting a member, as one sentence naming it."""
    try:
        yield
    except OSError as exc:
        raise IntegrityError(f"Archive member {name!r} cannot be extracted: {exc.strerror}.") from None


class _Extraction:
    """One archive extracted, member by member, into an empty directory it can never leave.

    Every member is written through directory descriptors opened with O_NOFOLLOW from the root, so no
    write passes through a link. Symlinks are made last, once every file and directory exists, and each
    is then resolved against the finished tree (``_link_destination``), so a link that another link,
    made before or after it, would bend out of the tree is caught. Hard links may only name a file
    already extracted. Devices, FIFOs and anything else are refused, and tarfile's ``data`` filter
    checks every member again as a second guard.
    """

    def __init__(self, tar: tarfile.TarFile, dest: Path) -> None:
        self._tar = tar
        self._root = dest.resolve(strict=True)
        self._links: dict[Parts, tuple[str, str]] = {}  # symlinks to make last: (member name, target)
        self.counts = {"files": 0, "directories": 0, "bytes": 0}

    def run(self) -> dict[str, int]:
        for member in self._tar:
            self._extract(member)
        for parts, (name, target) in self._links.items():
            with _named(name):
                self._make_link(parts, name, target)
        for parts, (name, target) in self._links.items():
            self._check_link(parts, name, target)
        return self.counts

    def _extract(self, member: tarfile.TarInfo) -> None:
        name = member.name
        if member.type in _SPECIAL or not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
            raise _refused(name, f"is {_SPECIAL.get(member.type, 'of a type a directory never holds')}")
        parts = self._parts(name)
        if not parts and not member.isdir():
            raise _refused(name, "names the target directory itself")
        for depth in range(1, len(parts) + 1):
            if parts[:depth] in self._links:
                where = "would replace" if depth == len(parts) else "lies under"
                raise _refused(name, f"{where} the symlink {'/'.join(parts[:depth])!r}")
        if member.issym():
            _check_link_target(name, member.linkname)
        source, size = self._hard_link_source(name, member.linkname) if member.islnk() else ((), 0)
        try:
            filtered = tarfile.data_filter(member, str(self._root))
        except tarfile.FilterError as exc:
            raise _refused(name, f"fails tarfile's data filter ({exc})") from None
        with _named(name):
            if member.isdir():
                os.close(self._directory(parts, name))
                self.counts["directories"] += 1
            elif member.issym():
                self._links[parts] = (name, member.linkname)
            elif member.islnk():
                self._hard_link(parts, source, size, name)
            else:
                self._file(parts, member, filtered)

    def _parts(self, name: str) -> Parts:
        """The components of a member name; refused if absolute, climbing, or too long for the system."""
        if name.startswith("/"):
            raise _refused(name, "is an absolute path")
        parts = tuple(p for p in name.split("/") if p not in ("", "."))
        if ".." in parts:
            raise _refused(name, "climbs out of the target with '..'")
        if "\0" in name or len(os.fsencode(self._root.joinpath(*parts))) >= _PATH_MAX:
            raise _refused(name, f"holds a NUL byte or would make a path longer than {_PATH_MAX - 1} bytes")
        return parts

    def _directory(self, parts: Parts, name: str, *, make: bool = True) -> int:
        """A descriptor of the directory ``parts`` under the root, made if missing, never reached through a link."""
        fd = os.open(self._root, _DIRECTORY)
        try:
            for depth, part in enumerate(parts, start=1):
                if make:
                    with suppress(FileExistsError):
                        os.mkdir(part, dir_fd=fd)
                try:
                    child = os.open(part, _DIRECTORY, dir_fd=fd)
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                        raise
                    raise _refused(
                        name, f"needs {'/'.join(parts[:depth])!r} to be a directory, which it is not"
                    ) from None
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _file(self, parts: Parts, member: tarfile.TarInfo, filtered: tarfile.TarInfo) -> None:
        source = self._tar.extractfile(member)
        if source is None:
            raise _refused(member.name, "has no content")
        parent = self._directory(parts[:-1], member.name)
        try:
            fd = os.open(
                parts[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent
            )
        except FileExistsError:
            raise _refused(member.name, "would replace an entry extracted before it") from None
        finally:
            os.close(parent)
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, 1 << 20)
            if filtered.mode is not None:
                os.fchmod(fd, filtered.mode)
            with suppress(OSError, OverflowError, ValueError):  # as tarfile: a time it cannot set is not an error
                os.utime(fd, (filtered.mtime, filtered.mtime))
        self.counts["files"] += 1
        self.counts["bytes"] += member.size

    def _hard_link_source(self, name: str, to: str) -> tuple[Parts, int]:
        """The file a hard link names, and its size: a regular file already extracted, or refused.

        Regular files are the only entries made so far that are not directories (links come last), and
        the root was empty, so a regular file found there through real directories is one extracted.
        """
        source = tuple(p for p in to.split("/") if p not in ("", "."))
        refusal = _refused(name, f"hard-links to {to!r}, which is not a file extracted before it inside the target")
        if to.startswith("/") or not source or ".." in source:
            raise refusal
        try:
            parent = self._directory(source[:-1], name, make=False)
        except (OSError, UnsafeArchiveError):
            raise refusal from None
        try:
            found = os.stat(source[-1], dir_fd=parent, follow_symlinks=False)
        except OSError:
            raise refusal from None
        finally:
            os.close(parent)
        if not stat.S_ISREG(found.st_mode):
            raise refusal
        return source, found.st_size

    def _hard_link(self, parts: Parts, source: Parts, size: int, name: str) -> None:
        from_dir = self._directory(source[:-1], name, make=False)
        try:
            to_dir = self._directory(parts[:-1], name)
            try:
                os.link(source[-1], parts[-1], src_dir_fd=from_dir, dst_dir_fd=to_dir, follow_symlinks=False)
            finally:
                os.close(to_dir)
        except FileExistsError:
            raise _refused(name, "would replace an entry extracted before it") from None
        finally:
            os.close(from_dir)
        self.counts["files"] += 1
        self.counts["bytes"] += size

    def _make_link(self, parts: Parts, name: str, target: str) -> None:
        parent = self._directory(parts[:-1], name)
        try:
            os.symlink(target, parts[-1], dir_fd=parent)
        except FileExistsError:
            raise _refused(name, "would replace an entry extracted before it") from None
        finally:
            os.close(parent)

    def _check_link(self, parts: Parts, name: str, target: str) -> None:
        try:
            inside = _link_destination(self._root, parts, lambda _: False) is not None
        except _TooManyLinks:
            raise _refused(name, f"links to {target!r} through more than {_MAX_LINK_HOPS} links") from None
        except OSError as exc:
            raise _refused(name, f"links to {target!r}, which cannot be resolved ({exc.strerror})") from None
        if not inside:
            raise _refused(name, f"links to {target!r}, which resolves outside the target")


def extract(archive: Path, dest: Path) -> dict[str, int]:
    """Extract ``archive`` into the empty directory ``dest``, refusing unsafe members; return counts.

    UnsafeArchiveError names the first member that could reach outside ``dest`` (``_Extraction``);
    whatever was extracted before it stays in ``dest`` for the caller to remove.
    """
    try:
        with tarfile.open(archive, mode="r:") as tar:
            return _Extraction(tar, dest).run()
    except tarfile.TarError as exc:
        raise IntegrityError(f"The archive cannot be read: {exc}.") from None


def _compare(found: dict[str, int], manifest: Manifest, what: str) -> None:
    expected = {k: manifest.source.get(k) for k in ("files", "directories", "bytes")}
    if any(found[k] != expected[k] for k in found):
        raise IntegrityError(f"{what} holds {found}, but the manifest records {expected}.")


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where the system lacks it."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    return bool(result == 0)


def _put_back(target: Path, aside: Path, pre_restore: Path | None, failure: Exception) -> RestoreError:
    """Undo a swap whose result failed validation; the error to raise says what was done.

    The previous directory (at ``pre_restore``; None if there was none) becomes ``target`` again and the
    restored tree is removed; if a rename fails, ManualInterventionError says where each tree is.
    """
    reason = (
        str(failure).rstrip(".") if isinstance(failure, BackstopError) else f"{target} could not be checked ({failure})"
    )
    restored = target
    try:
        if pre_restore is not None and _exchange(pre_restore, target):
            restored = pre_restore
        else:
            target.rename(aside)
            restored = aside
            if pre_restore is not None:
                pre_restore.rename(target)
    except OSError as exc:
        where = f"the previous directory is at {pre_restore} and " if pre_restore is not None else ""
        return ManualInterventionError(
            f"{reason}; undoing the swap failed ({exc.strerror}): {where}the restored one is at {restored}."
        )
    shutil.rmtree(restored, ignore_errors=True)
    if pre_restore is None:
        return ValidationError(f"{reason}; {target} did not exist before, and the restored copy was removed.")
    return ValidationError(f"{reason}; the previous directory was put back at {target} and the restored copy removed.")


class FilesEngine:
    """Archives, checks and restores of one configured directory."""

    name = "files"
    artifact = "tar"

    def __init__(self, db: FilesDatabase) -> None:
        self._db = db

    @contextmanager
    def _snapshot(self, run_dir: Path) -> Iterator[DirectorySnapshot]:
        yield DirectorySnapshot(self._db)

    def snapshot(self, run_dir: Path) -> AbstractContextManager[DirectorySnapshot]:
        return self._snapshot(run_dir)

    def staging_path(self, target: Path, run_dir: Path, stamp: str) -> Path:
        return run_dir / "archive.tar"

    def inspect_artifact(self, raw: Path, manifest: Manifest, work_dir: Path) -> Inspection:
        dest = work_dir / "extracted"
        dest.mkdir()
        try:
            found = extract(raw, dest)
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        _compare(found, manifest, f"Backup {manifest.backup_id}")
        return Inspection(
            integrity=IntegrityCheck(check=_CHECK, passed=True, detail=f"{found['files']} files"), stats=found
        )

    def describe_target(self, target: Path) -> dict[str, int] | None:
        if not target.exists():
            return None
        files = sum(len(f) for _, _, f in os.walk(target))
        return {"files": files}

    def check_restored(self, target: Path, found: dict[str, int]) -> None:
        """ValidationError unless ``target``, swapped in, holds the files extracted into it."""
        present = sum(1 for path in target.rglob("*") if path.is_file() and not path.is_symlink())
        if present != found["files"]:
            raise ValidationError(f"Restored {target} holds {present} files, expected {found['files']}.")

    def install(self, raw: Path, target: Path, manifest: Manifest, pre_restore: Path) -> Inspection:
        staged = target.parent / f".{target.name}.restore.tmp"
        shutil.rmtree(staged, ignore_errors=True)
        staged.mkdir(parents=True)
        try:
            found = extract(raw, staged)
            _compare(found, manifest, "The extracted archive")
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        existed = target.exists()
        if existed:
            if _exchange(staged, target):
                staged.rename(pre_restore)
            else:  # two renames; the old directory goes back if the second fails
                target.rename(pre_restore)
                try:
                    staged.rename(target)
                except OSError as exc:
                    pre_restore.rename(target)
                    raise RestoreError(
                        f"{target} could not be replaced ({exc.strerror}); it was left as it was."
                    ) from None
        else:
            staged.rename(target)
        try:
            self.check_restored(target, found)
        except Exception as exc:  # noqa: BLE001  # whatever fails the check, the old directory goes back first
            raise _put_back(target, staged, pre_restore if existed else None, exc) from None
        return Inspection(
            integrity=IntegrityCheck(check=_CHECK, passed=True, detail=f"{found['files']} files"), stats=found
        )
