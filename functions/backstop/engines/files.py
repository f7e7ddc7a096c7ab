"""Plain directories, archived as a POSIX tar stream and extracted safely.

The tar is produced by a thread writing into a pipe, so a directory of any size streams through
the pipeline without a temporary archive. A failure while producing (a file vanishing, permission
denied) is raised by the reader before it reports end of stream, so a partial archive is never
completed as an upload. Extraction refuses any member that would land outside the target.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fnmatch
import os
import platform
import shutil
import tarfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import BinaryIO

from backstop.config import FilesDatabase
from backstop.engines.base import Inspection
from backstop.errors import IntegrityError, RestoreError, SourceError, UnsafeArchiveError, ValidationError
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
                for path in sorted(self._walk()):
                    relative = path.relative_to(self._root).as_posix()
                    info = tar.gettarinfo(str(path), arcname=relative)
                    if info.islnk():  # a second name of a hard-linked file: archive its content again
                        info.type, info.linkname, info.size = tarfile.REGTYPE, "", path.stat().st_size
                    if info.issym() and _link_escapes(self._root, path.parent, info.linkname):
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
        # Links out of the tree are not archived: a restore could never follow them safely.
        self.warnings.extend(f"symlink {link} points outside the directory; not archived" for link in producer.skipped)
        return Inspection(
            integrity=IntegrityCheck(
                check=_CHECK, passed=True, detail=f"{producer.files} files, {producer.bytes} bytes"
            ),
            stats=stats,
        )


def _link_escapes(root: Path, directory: Path, linkname: str) -> bool:
    """Whether a symlink in ``directory`` to ``linkname`` is absolute or leads (lexically) out of ``root``."""
    if linkname.startswith("/"):
        return True
    return not Path(os.path.normpath(directory / linkname)).is_relative_to(os.path.normpath(root))


def _safe_members(tar: tarfile.TarFile, dest: Path) -> Iterator[tarfile.TarInfo]:
    """Members that stay inside ``dest``; UnsafeArchiveError on the first that would not."""
    root = dest.resolve()
    for member in tar:
        name = member.name
        if name.startswith("/") or ".." in Path(name).parts:
            raise UnsafeArchiveError(f"Archive member {name!r} would be written outside the target; refused.")
        if not (member.isfile() or member.isdir() or member.issym()):
            raise UnsafeArchiveError(f"Archive member {name!r} is a device, fifo or hard link; refused.")
        if member.issym() and _link_escapes(root, (root / name).parent, member.linkname):
            raise UnsafeArchiveError(
                f"Archive member {name!r} links outside the target ({member.linkname!r}); refused."
            )
        yield member


def extract(archive: Path, dest: Path) -> dict[str, int]:
    """Extract ``archive`` into the empty directory ``dest``, refusing unsafe members; return counts."""
    files = dirs = size = 0
    try:
        with tarfile.open(archive, mode="r:") as tar:
            for member in _safe_members(tar, dest):
                # The "data" filter is a second guard (absolute paths, links out, special files).
                tar.extract(member, dest, filter="data")
                files += int(member.isfile())
                dirs += int(member.isdir())
                size += member.size if member.isfile() else 0
    except tarfile.TarError as exc:
        raise IntegrityError(f"The archive cannot be read: {exc}.") from None
    return {"files": files, "directories": dirs, "bytes": size}


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
        if target.exists():
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
        present = sum(1 for path in target.rglob("*") if path.is_file() and not path.is_symlink())
        if present != found["files"]:
            raise ValidationError(f"Restored {target} holds {present} files, expected {found['files']}.")
        return Inspection(
            integrity=IntegrityCheck(check=_CHECK, passed=True, detail=f"{found['files']} files"), stats=found
        )
