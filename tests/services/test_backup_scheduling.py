"""How a backup shares the CPU: SQLite's integrity check, which gates the commit, runs at normal
priority while compression and upload run in a thread of their own at a lower one; an interrupted
run stops that thread and commits nothing. Real SQLite files and directories, S3 on moto."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import backstop.services.backup as backup_module
from backstop.adapters.s3_store import MultipartUpload
from backstop.engines.sqlite import SqliteSnapshot
from backstop.manifest import Trigger
from backstop.pipeline import BACKGROUND_NICE, CHUNK, lower_thread_priority
from backstop.services.backup import BackupRequest, BackupService
from tests.services import at, blob_database, open_uploads, run_backup

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def _in_new_thread(work: Callable[[], int]) -> int:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


@linux_only
def test_lowering_a_threads_priority_changes_that_thread_and_the_threads_it_starts_only() -> None:
    before = _nice()

    def lowered_then_child() -> int:
        lower_thread_priority()
        return _nice() * 100 + _in_new_thread(_nice)

    combined = _in_new_thread(lowered_then_child)
    lowered, child = divmod(combined, 100)

    assert lowered == min(19, before + BACKGROUND_NICE)
    assert child == lowered  # zstd's workers and the upload pool inherit it
    assert _nice() == before  # the caller's thread is untouched


@pytest.fixture
def priorities(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[int]]:
    """The nice values seen by the compressing thread, the upload workers and the SQLite check."""
    seen: dict[str, set[int]] = {"compress": set(), "upload": set(), "check": set()}

    def recording(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[name].add(_nice())
            return original(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(backup_module, "compress_stream", recording("compress", backup_module.compress_stream))
    monkeypatch.setattr(MultipartUpload, "_upload_part", recording("upload", MultipartUpload._upload_part))
    monkeypatch.setattr(SqliteSnapshot, "inspect", recording("check", SqliteSnapshot.inspect))
    return seen


@linux_only
def test_sqlite_compression_and_upload_run_below_the_integrity_check(
    make_config: Any, store: Any, orders_db: Path, priorities: dict[str, set[int]]
) -> None:
    main = _nice()

    run_backup(make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)}), store, at(21))

    lowered = min(19, main + BACKGROUND_NICE)
    assert priorities == {"compress": {lowered}, "upload": {lowered}, "check": {main}}
    assert _nice() == main  # the caller's thread keeps its priority for the next run


@linux_only
def test_a_directory_backup_compresses_at_normal_priority(
    make_config: Any, store: Any, tmp_path: Path, priorities: dict[str, set[int]]
) -> None:
    source = tmp_path / "uploads"
    source.mkdir()
    (source / "a.txt").write_text("hello\n" * 1000)
    main = _nice()

    config = make_config({"name": "uploads", "engine": "files", "path": str(source)})

    run_backup(config, store, at(21), database="uploads")

    assert priorities["compress"] == {main}
    assert priorities["upload"] == {main}


class _InterruptingProgress:
    """Sends SIGINT to the main thread after the first chunk, then slows each chunk down so the main
    thread has time to react: a run that ignored the interruption would still read every chunk."""

    def __init__(self) -> None:
        self.chunks = 0

    def start(self, description: str, total: int | None) -> None:
        pass

    def advance(self, amount: int) -> None:
        self.chunks += 1
        if self.chunks == 1:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        time.sleep(0.05)

    def finish(self) -> None:
        pass


@pytest.fixture
def sigint_raises() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture
def db_of_40_chunks(tmp_path: Path) -> Path:
    path = blob_database(tmp_path / "orders.db", 640)
    assert path.stat().st_size >= 40 * CHUNK
    return path


def test_an_interrupted_backup_stops_compressing_and_commits_nothing(
    make_config: Any, store: Any, s3: Any, db_of_40_chunks: Path, work_dir: Path, sigint_raises: None
) -> None:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(db_of_40_chunks)})
    progress = _InterruptingProgress()
    service = BackupService(config, store, progress=progress)

    with pytest.raises(KeyboardInterrupt):
        service.run(BackupRequest("orders", at(21), "manual", Trigger(kind="user", by="test")))

    assert progress.chunks < 10  # stopped within a few chunks, not after reading all 40
    assert store.backup_ids("orders") == []
    assert open_uploads(s3) == []
    assert [p for p in work_dir.iterdir() if p.name.startswith(backup_module.RUN_DIR_PREFIX)] == []
