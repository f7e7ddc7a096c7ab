"""Hostile directory archives, committed consistently in the vault, are refused by verify and by restore.

Each archive is what a writer with bucket access could commit: a sealed manifest whose counts match
the archive, and the archive compressed with zstd as Backstop stores it. Each is fed through the real
``VerifyService`` and ``RestoreService``; a sentinel directory beside the target, and the target itself,
must come out byte-for-byte as they went in.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from backstop.engines.files import FilesEngine
from backstop.errors import UnsafeArchiveError
from backstop.manifest import Manifest
from backstop.services.restore import RestoreService
from backstop.services.verify import VerifyService
from tests.engines.test_files_engine import snapshot_tree
from tests.services import at, leftovers, replace_artifact, run_backup, write_manifest

Member = tuple[tarfile.TarInfo, bytes | None]


def tar_of(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def regular(name: str, data: bytes = b"pwned\n") -> Member:
    return tarfile.TarInfo(name), data


def directory(name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, None


def link(kind: bytes, name: str, to: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, to
    return info, None


def symlink(name: str, to: str) -> Member:
    return link(tarfile.SYMTYPE, name, to)


def hardlink(name: str, to: str) -> Member:
    return link(tarfile.LNKTYPE, name, to)


def special(kind: bytes, name: str) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = kind, 1, 3
    return info, None


def from_root(path: Path) -> str:
    """``path`` without its leading slash: what follows a climb to ``/``."""
    return path.resolve().as_posix().lstrip("/")


def symlink_chain_to(sentinel: Path) -> bytes:
    """A link that reads as inside the tree but really climbs to ``/`` and then into ``sentinel``.

    Every directory of a chain ``a/a/.../a`` holds ``s -> .``; each ``s/..`` then climbs one real level
    while it cancels out lexically, so ``L`` is lexically ``<root>/<sentinel>`` and really ``/<sentinel>``.
    ``L`` comes first, while nothing it names exists yet.
    """
    depth = 24
    target = "a/" * depth + "s/../" * (depth + 1) + "../" * depth + from_root(sentinel)
    dirs = [directory("/".join(["a"] * level)) for level in range(1, depth + 1)]
    dots = [symlink("/".join(["a"] * level + ["s"]), ".") for level in range(depth + 1)]
    return tar_of(symlink("L", target), *dirs, *dots)


def over_long_path_to(sentinel: Path) -> bytes:
    """Links whose real expansion outgrows the path length ``os.path.realpath`` resolves (CVE-2025-4517).

    Sixteen one-letter links each lead to a 247-character directory: ``a/b/.../p`` is short, its real
    path is about 4,000 characters, so realpath gives up on the over-long ``l...l`` link and takes it as a
    plain name. tarfile's data filter and a lexical check then both see ``escape`` as inside the tree,
    while the kernel follows ``l...l`` back to the root and climbs 17 levels to ``/`` and the sentinel.
    """
    long_dir, steps, members, path = "d" * 247, "abcdefghijklmnop", [], ""
    for step in steps:
        members.append(directory(os.path.join(path, long_dir)))
        members.append(symlink(os.path.join(path, step), long_dir))
        path = os.path.join(path, step)
    deep_link = os.path.join(*steps, "l" * 254)
    members.append(symlink(deep_link, "../" * len(steps)))
    members.append(symlink("escape", deep_link + "/.." * (len(steps) + 1) + "/" + from_root(sentinel)))
    members.append(regular("escape/pwned.txt"))
    return tar_of(*members)


@dataclass(frozen=True)
class Hostile:
    build: Callable[[Path], bytes]  # given the sentinel directory
    member: str  # the member the refusal must name


HOSTILE = {
    # The restored s1 would point at the target's parent.
    "symlink-chain": Hostile(lambda _: tar_of(symlink("s1", "s2/.."), symlink("s2", ".")), "s1"),
    "symlink-chain-link-last": Hostile(lambda _: tar_of(symlink("s2", "."), symlink("s1", "s2/..")), "s1"),
    "symlink-chain-through-a-directory": Hostile(
        lambda _: tar_of(symlink("s1", "s2/.."), directory("sub"), symlink("s2", "sub/..")), "s1"
    ),
    "symlink-chain-of-three": Hostile(
        lambda _: tar_of(symlink("s1", "s2/up/.."), directory("sub"), symlink("s2", "sub"), symlink("sub/up", "..")),
        "s1",
    ),
    "symlink-chain-to-the-sentinel": Hostile(symlink_chain_to, "L"),
    "symlink-chain-written-through": Hostile(
        lambda _: tar_of(symlink("s1", "s2/.."), symlink("s2", "."), regular("s1/sentinel/pwned.txt")),
        "s1/sentinel/pwned.txt",
    ),
    "a-file-replaced-by-an-escaping-link": Hostile(
        lambda _: tar_of(regular("index.html"), symlink("s2", "."), symlink("index.html", "s2/../sentinel/secret.txt")),
        "index.html",
    ),
    "over-long-path": Hostile(over_long_path_to, "a/" + "d" * 247),
    "absolute-member": Hostile(lambda s: tar_of(regular(str(s.resolve() / "pwned.txt"))), "pwned.txt"),
    "dot-dot-member": Hostile(lambda s: tar_of(regular("../" * 30 + from_root(s) + "/pwned.txt")), "pwned.txt"),
    "hard-link-to-an-absolute-path": Hostile(
        lambda s: tar_of(hardlink("secret", str(s.resolve() / "secret.txt"))), "secret"
    ),
    "hard-link-up-and-out": Hostile(
        lambda s: tar_of(hardlink("secret", "../" * 30 + from_root(s) + "/secret.txt")), "secret"
    ),
    "hard-link-through-an-escaping-symlink": Hostile(
        lambda _: tar_of(symlink("s1", "s2/.."), symlink("s2", "."), hardlink("secret", "s1/sentinel/secret.txt")),
        "secret",
    ),
    "hard-link-to-a-later-member": Hostile(
        lambda _: tar_of(hardlink("early", "late.txt"), regular("late.txt")), "early"
    ),
    "character-device": Hostile(lambda _: tar_of(special(tarfile.CHRTYPE, "null")), "null"),
    "block-device": Hostile(lambda _: tar_of(special(tarfile.BLKTYPE, "disk")), "disk"),
    "fifo": Hostile(lambda _: tar_of(special(tarfile.FIFOTYPE, "pipe")), "pipe"),
}


def archive_counts(raw: bytes) -> dict[str, int]:
    """The files, directories and bytes Backstop's manifest records for an archive (hard links count as files)."""
    files = dirs = size = 0
    sizes: dict[str, int] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tar:
        for member in tar:
            if member.isfile():
                files, size = files + 1, size + member.size
                sizes[member.name] = member.size
            elif member.islnk():
                files, size = files + 1, size + sizes.get(member.linkname, 0)
            dirs += int(member.isdir())
    return {"files": files, "directories": dirs, "bytes": size}


def commit_archive(s3: Any, store: Any, manifest: Manifest, raw: bytes) -> None:
    """Commit ``raw`` as the backup's artifact, zstd-compressed, under a sealed manifest with its counts."""
    forged = replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(raw), raw=raw)
    write_manifest(s3, store, forged.model_copy(update={"source": {**forged.source, **archive_counts(raw)}}))


@pytest.fixture
def committed(make_config: Callable[..., Any], store: Any, tmp_path: Path) -> tuple[Any, Manifest]:
    """A directory database with one committed backup."""
    source = tmp_path / "site"
    source.mkdir()
    (source / "index.html").write_text("<h1>orders</h1>\n")
    config = make_config({"name": "site", "engine": "files", "path": str(source)})
    return config, run_backup(config, store, at(21), database="site").manifest


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path]:
    """A live target directory, and a sentinel directory beside it."""
    target = tmp_path / "live-site"
    target.mkdir()
    (target / "index.html").write_text("live")
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "secret.txt").write_text("secret")
    return target, sentinel


def restore(config: Any, store: Any, target: Path) -> None:
    RestoreService(config, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_archive_is_refused_by_verify_and_restore_and_changes_nothing(
    case: str,
    committed: tuple[Any, Manifest],
    scene: tuple[Path, Path],
    s3: Any,
    store: Any,
    tmp_path: Path,
    work_dir: Path,
) -> None:
    # given a committed directory backup replaced, consistently, by a hostile archive
    config, manifest = committed
    target, sentinel = scene
    commit_archive(s3, store, manifest, HOSTILE[case].build(sentinel))
    before = snapshot_tree(tmp_path)

    # when it is verified, and restored over the live directory
    with pytest.raises(UnsafeArchiveError) as verified:
        VerifyService(config, store).verify("site", "latest")
    with pytest.raises(UnsafeArchiveError) as restored:
        restore(config, store, target)

    # then both refuse in one sentence naming the member, and nothing changed anywhere: not the sentinel
    # beside the target, not the target, and no staging, pre-restore or work directory remains
    for refusal in (verified.value, restored.value):
        assert "Archive member '" in str(refusal) and HOSTILE[case].member in str(refusal), str(refusal)
        assert str(refusal).count(". ") == 0 and str(refusal).endswith("."), str(refusal)
    assert snapshot_tree(target) == {"index.html": ("file", b"live")}
    assert snapshot_tree(sentinel) == {"secret.txt": ("file", b"secret")}
    assert snapshot_tree(tmp_path) == before
    assert leftovers(work_dir) == []


@pytest.mark.parametrize("case", ["symlink-chain", "over-long-path", "hard-link-through-an-escaping-symlink"])
def test_installing_a_hostile_archive_never_swaps_and_leaves_no_staging_directory(
    case: str, committed: tuple[Any, Manifest], scene: tuple[Path, Path], tmp_path: Path
) -> None:
    # given a hostile archive handed to the engine's install step directly (as if the check before it were skipped)
    config, manifest = committed
    target, sentinel = scene
    raw = tmp_path / "hostile.tar"
    raw.write_bytes(HOSTILE[case].build(sentinel))
    manifest = manifest.model_copy(update={"source": {**manifest.source, **archive_counts(raw.read_bytes())}})
    before = snapshot_tree(tmp_path)

    # when it is installed over the live directory
    with pytest.raises(UnsafeArchiveError):
        FilesEngine(config.database("site")).install(raw, target, manifest, tmp_path / "live-site.pre-restore")

    # then the swap never happened and the staging directory is gone
    assert snapshot_tree(tmp_path) == before


def test_links_chained_inside_the_tree_are_restored(
    committed: tuple[Any, Manifest], scene: tuple[Path, Path], s3: Any, store: Any, tmp_path: Path
) -> None:
    # given an archive whose links stay inside the tree however they chain: a link before its target,
    # a link to a link, a link up to the root from a subdirectory, a dangling link inside the tree
    config, manifest = committed
    target, _ = scene
    raw = tar_of(
        symlink("a-link", "z/page.html"),
        regular("index.html", b"<h1>hi</h1>"),
        symlink("latest", "current"),
        symlink("current", "index.html"),
        directory("sub"),
        symlink("sub/up", ".."),
        symlink("sub/home", "up/sub/up/index.html"),
        symlink("missing", "nowhere/file"),
        directory("z"),
        regular("z/page.html", b"page"),
    )
    commit_archive(s3, store, manifest, raw)

    # when it is verified and restored
    VerifyService(config, store).verify("site", "latest")
    restore(config, store, target)

    # then every link is back as written and resolves inside the target
    assert (target / "latest").read_bytes() == b"<h1>hi</h1>"
    assert (target / "a-link").read_bytes() == b"page"
    assert (target / "sub" / "home").read_bytes() == b"<h1>hi</h1>"
    assert os.readlink(target / "missing") == "nowhere/file"
    assert (target / "sub" / "up").resolve() == target.resolve()


def test_a_hard_link_to_a_member_extracted_before_it_is_restored_as_a_second_name(
    committed: tuple[Any, Manifest], scene: tuple[Path, Path], s3: Any, store: Any
) -> None:
    # given an archive (as GNU tar writes them) with a hard link to an earlier member
    config, manifest = committed
    target, _ = scene
    commit_archive(
        s3, store, manifest, tar_of(regular("release-1.tar", b"release one"), hardlink("current.tar", "release-1.tar"))
    )

    # when it is verified and restored
    VerifyService(config, store).verify("site", "latest")
    restore(config, store, target)

    # then both names are there, one file inside the target
    assert (target / "current.tar").read_bytes() == b"release one"
    assert (target / "current.tar").stat().st_ino == (target / "release-1.tar").stat().st_ino


def test_a_source_holding_an_escaping_link_chain_is_backed_up_without_it_and_restores(
    make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given a source directory holding the chain s1 -> s2/.. and s2 -> . (lexically inside, really its parent),
    # and a link that leaves the tree through s1 and comes back into it
    source = tmp_path / "site"
    source.mkdir()
    (source / "index.html").write_text("hi")
    (source / "s1").symlink_to("s2/..")
    (source / "s2").symlink_to(".")
    (source / "via").symlink_to("s1/site/index.html")
    config = make_config({"name": "site", "engine": "files", "path": str(source)})

    # when it is backed up, verified and restored
    outcome = run_backup(config, store, at(21), database="site")
    VerifyService(config, store).verify("site", "latest")
    target = tmp_path / "restored"
    restore(config, store, target)

    # then the escaping links were left out, with a warning each, and everything else is back
    assert sorted(w.split(" ")[1] for w in outcome.manifest.warnings) == ["s1", "via"], outcome.manifest.warnings
    assert snapshot_tree(target) == {"index.html": ("file", b"hi"), "s2": ("link", ".")}
