"""Sockets, FIFOs and devices in a `files` source: skipped with a warning the manifest keeps, never a crash."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.services.restore import RestoreService
from backstop.services.verify import VerifyService
from tests.engines.test_files_engine import snapshot_tree
from tests.services import at, run_backup


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="bs-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def bind_socket(path: Path) -> None:
    """A Unix socket file at ``path``, as a running application leaves one (the file outlives the socket)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))


def test_sockets_and_fifos_in_the_source_are_skipped_with_a_warning_in_the_manifest(
    short_dir: Path, make_config: Callable[..., Any], store: Any
) -> None:
    # given a directory holding an application's socket and a FIFO among its files
    source = short_dir / "site"
    (source / "run").mkdir(parents=True)
    (source / "index.html").write_text("<h1>orders</h1>\n")
    (source / "run" / "state.json").write_text("{}")
    bind_socket(source / "run" / "app.sock")
    os.mkfifo(source / "run" / "events.fifo")
    assert stat.S_ISSOCK((source / "run" / "app.sock").lstat().st_mode)
    config = make_config({"name": "site", "engine": "files", "path": str(source)})

    # when it is backed up, verified and restored
    outcome = run_backup(config, store, at(21), database="site")
    VerifyService(config, store).verify("site", "latest")
    target = short_dir / "restored"
    RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the backup is committed, its stored manifest names each skipped file and its kind,
    # and the restore gives back everything else
    assert outcome.created
    stored = store.get_manifest(outcome.manifest.backup_id)
    assert any("socket" in w and "run/app.sock" in w for w in stored.warnings), stored.warnings
    assert any("FIFO" in w and "run/events.fifo" in w for w in stored.warnings), stored.warnings
    assert stored.source["files"] == 2
    assert snapshot_tree(target) == {
        "index.html": ("file", b"<h1>orders</h1>\n"),
        "run": ("dir", ""),
        "run/state.json": ("file", b"{}"),
    }


def test_a_device_file_in_the_source_is_skipped_with_a_warning_in_the_manifest(
    short_dir: Path, make_config: Callable[..., Any], store: Any
) -> None:
    # given a directory holding a character device (a copy of /dev/null, as a chroot has)
    source = short_dir / "site"
    source.mkdir()
    (source / "index.html").write_text("hi")
    try:
        os.mknod(source / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("making a device file needs CAP_MKNOD")
    config = make_config({"name": "site", "engine": "files", "path": str(source)})

    # when it is backed up
    outcome = run_backup(config, store, at(21), database="site")

    # then the backup is committed without it, and the manifest says so
    assert outcome.created
    assert any("character device" in w and "null" in w for w in outcome.manifest.warnings), outcome.manifest.warnings
    assert outcome.manifest.source["files"] == 1
