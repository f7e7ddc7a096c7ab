"""Directories: a round trip through S3 keeps contents and in-tree symlinks; hostile archives are refused."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zstandard

from backstop.engines.files import extract
from backstop.errors import UnsafeArchiveError
from backstop.services.restore import RestoreService
from backstop.services.verify import VerifyService
from tests.services import at, leftovers, replace_artifact, run_backup


def build_tree(root: Path) -> Path:
    """A small site directory: nested files, binary and empty files, an empty directory, in-tree symlinks."""
    (root / "static" / "img").mkdir(parents=True)
    (root / "empty-dir").mkdir()
    (root / "index.html").write_text("<h1>orders</h1>\n")
    (root / "static" / "app.js").write_text("console.log('hi')\n" * 500)
    (root / "static" / "img" / "logo.bin").write_bytes(bytes(range(256)) * 64)
    (root / "static" / "empty.txt").write_bytes(b"")
    (root / "current.html").symlink_to("index.html")
    (root / "assets").symlink_to("static/img")
    return root


def snapshot_tree(root: Path) -> dict[str, tuple[str, str | bytes]]:
    """Every entry under ``root``: ('link', target), ('file', bytes) or ('dir', '')."""
    entries: dict[str, tuple[str, str | bytes]] = {}
    for path in sorted(root.rglob("*")):
        name = str(path.relative_to(root))
        if path.is_symlink():
            entries[name] = ("link", os.readlink(path))
        elif path.is_dir():
            entries[name] = ("dir", "")
        else:
            entries[name] = ("file", path.read_bytes())
    return entries


@pytest.fixture
def site(tmp_path: Path, make_config: Callable[..., Any]) -> tuple[Path, Any]:
    root = build_tree(tmp_path / "site")
    return root, make_config({"name": "site", "engine": "files", "path": str(root)})


def test_a_directory_round_trip_preserves_contents_and_symlinks(
    site: tuple[Path, Any], store: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a committed backup of a directory with symlinks inside it
    root, config = site
    outcome = run_backup(config, store, at(21), database="site")

    # when it is verified and restored into a new path
    VerifyService(config, store).verify("site", "latest")
    target = tmp_path / "restored-site"
    RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then every file, directory and symlink is back, the links still point inside the tree, and the work dir is clean
    assert outcome.manifest.object.key.endswith(".tar.zst")
    assert outcome.manifest.source["files"] == 4
    assert snapshot_tree(target) == snapshot_tree(root)
    assert (target / "current.html").read_text() == "<h1>orders</h1>\n"
    assert (target / "assets" / "logo.bin").resolve() == (target / "static" / "img" / "logo.bin").resolve()
    assert leftovers(work_dir) == []


def test_restoring_over_an_existing_directory_keeps_the_old_one(
    site: tuple[Path, Any], store: Any, tmp_path: Path
) -> None:
    # given a committed backup, and an existing target directory with other content
    root, config = site
    run_backup(config, store, at(21), database="site")
    target = tmp_path / "live-site"
    target.mkdir()
    (target / "old.html").write_text("old")
    before = snapshot_tree(target)

    # when the backup is restored over it
    outcome = RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the target is the backup and the old directory is kept, whole, at the pre-restore path
    assert snapshot_tree(target) == snapshot_tree(root)
    assert outcome.plan.pre_restore is not None
    assert snapshot_tree(outcome.plan.pre_restore) == before


# -- hostile archives ------------------------------------------------------------------------------


def tar_of(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def regular(name: str, data: bytes = b"pwned\n") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def symlink(name: str, to: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = to
    return info, None


def hardlink(name: str, to: str) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE
    info.linkname = to
    return info, None


@pytest.fixture
def sandbox(tmp_path: Path) -> tuple[Path, Path]:
    """An empty extraction directory inside a parent whose other contents must never change."""
    parent = tmp_path / "sandbox"
    dest = parent / "dest"
    dest.mkdir(parents=True)
    return parent, dest


HOSTILE = {
    "dot-dot": lambda parent: tar_of(regular("ok.txt", b"fine"), regular("../escaped.txt")),
    "nested-dot-dot": lambda parent: tar_of(regular("a/../../escaped.txt")),
    "absolute": lambda parent: tar_of(regular(str(parent / "escaped.txt"))),
    "symlink-out-relative": lambda parent: tar_of(symlink("link", ".."), regular("link/escaped.txt")),
    "symlink-out-absolute": lambda parent: tar_of(symlink("link", str(parent)), regular("link/escaped.txt")),
    "hard-link-out": lambda parent: tar_of(hardlink("link", str(parent / "escaped.txt"))),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_member_escaping_the_target_is_refused_and_nothing_lands_outside(
    case: str, sandbox: tuple[Path, Path]
) -> None:
    # given an archive with a member that would land outside the extraction directory
    parent, dest = sandbox
    archive = parent.parent / "hostile.tar"
    archive.write_bytes(HOSTILE[case](parent))

    # when it is extracted
    with pytest.raises(UnsafeArchiveError) as caught:
        extract(archive, dest)

    # then it is refused by name and nothing was written outside the extraction directory
    assert "refused" in str(caught.value)
    assert [name for name in leftovers(parent) if not name.startswith("dest")] == []
    assert not (parent.parent / "escaped.txt").exists()


def test_a_symlink_to_a_sibling_sharing_the_targets_name_prefix_is_refused_as_unsafe(
    sandbox: tuple[Path, Path],
) -> None:
    # given an archive linking to a sibling directory whose name starts with the target's name
    parent, dest = sandbox
    (parent / "dest-evil").mkdir()
    archive = parent.parent / "hostile.tar"
    archive.write_bytes(tar_of(symlink("link", "../dest-evil"), regular("link/escaped.txt")))

    # when it is extracted, then it is refused as an unsafe archive and nothing lands in the sibling
    with pytest.raises(UnsafeArchiveError):
        extract(archive, dest)
    assert leftovers(parent / "dest-evil") == []


def test_a_committed_backup_holding_an_escaping_member_is_refused_by_verify_and_restore(
    site: tuple[Path, Any], store: Any, s3: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a committed directory backup whose artifact was replaced, consistently, by a hostile archive
    _, config = site
    manifest = run_backup(config, store, at(21), database="site").manifest
    hostile = tar_of(regular("index.html", b"<h1>hi</h1>"), regular("../../escaped.txt"))
    replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(hostile), raw=hostile)
    target = tmp_path / "live-site"
    target.mkdir()
    (target / "index.html").write_text("live")

    # when it is verified, and restored over an existing directory
    with pytest.raises(UnsafeArchiveError):
        VerifyService(config, store).verify("site", "latest")
    with pytest.raises(UnsafeArchiveError):
        RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the target is untouched, nothing escaped, and no staging or pre-restore directory remains
    assert snapshot_tree(target) == {"index.html": ("file", b"live")}
    assert not (tmp_path / "escaped.txt").exists()
    assert not (work_dir.parent / "escaped.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if "live-site" in p.name) == ["live-site"]
    assert leftovers(work_dir) == []


# -- what a directory backup promises: committed means restorable ----------------------------------


def test_both_names_of_a_hard_linked_file_are_restored(
    make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given a directory holding one file under two names (a hard link, as deployment tools make)
    root = tmp_path / "site"
    root.mkdir()
    (root / "release-1.tar").write_bytes(b"release one")
    os.link(root / "release-1.tar", root / "current.tar")
    config = make_config({"name": "site", "engine": "files", "path": str(root)})

    # when it is backed up and restored
    run_backup(config, store, at(21), database="site")
    target = tmp_path / "restored"
    RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then both names are there with their content
    assert sorted(p.name for p in target.iterdir()) == ["current.tar", "release-1.tar"]
    assert (target / "current.tar").read_bytes() == b"release one"


def test_a_committed_directory_backup_with_a_link_out_of_the_tree_can_be_verified(
    make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given a directory with an absolute symlink to a folder outside it
    root = tmp_path / "site"
    root.mkdir()
    (tmp_path / "shared-logs").mkdir()
    (root / "index.html").write_text("hi")
    (root / "logs").symlink_to(tmp_path / "shared-logs")
    config = make_config({"name": "site", "engine": "files", "path": str(root)})

    # when it is backed up
    outcome = run_backup(config, store, at(21), database="site")

    # then a backup that was committed must pass verify (refusing at backup time would also keep the promise,
    # and would make run_backup raise above)
    assert outcome.created
    VerifyService(config, store).verify("site", "latest")
