"""A directory restore that fails validation after the swap puts the old tree back."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.engines import files
from backstop.engines.files import FilesEngine
from backstop.errors import ValidationError
from backstop.services import restore as restore_service
from backstop.services.restore import RestoreService
from tests.engines.test_files_engine import build_tree, snapshot_tree
from tests.services import at, leftovers, run_backup


class WrittenIntoDuringTheRestore(FilesEngine):
    """The real engine, with an application writing into the target between the swap and the validation."""

    def check_restored(self, target: Path, found: dict[str, int]) -> None:
        (target / "late-write.log").write_text("written by the application during the restore")
        super().check_restored(target, found)


@pytest.fixture
def backed_up(make_config: Callable[..., Any], store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A committed directory backup, restored by an engine whose validation will fail after the swap."""
    config = make_config({"name": "site", "engine": "files", "path": str(build_tree(tmp_path / "site"))})
    run_backup(config, store, at(21), database="site")
    monkeypatch.setattr(restore_service, "local_restore_engine", WrittenIntoDuringTheRestore)
    return config


@pytest.fixture(params=["renameat2", "two-renames"])
def swap(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The atomic exchange, and the two renames used where the system lacks it."""
    if request.param == "two-renames":
        monkeypatch.setattr(files, "_exchange", lambda _a, _b: False)
    return str(request.param)


def test_a_restore_failing_validation_after_the_swap_puts_the_old_directory_back(
    backed_up: Any, swap: str, store: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a live directory
    target = tmp_path / "live-site"
    (target / "uploads").mkdir(parents=True)
    (target / "index.html").write_text("live")
    (target / "uploads" / "avatar.png").write_bytes(b"\x89PNG live")
    before = snapshot_tree(target)

    # when a restore over it fails validation after the swap
    with pytest.raises(ValidationError) as caught:
        RestoreService(backed_up, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the error says so, the live directory is the target again, byte for byte, and neither the
    # restored tree nor a pre-restore copy nor a staging directory is left beside it
    assert snapshot_tree(target) == before
    assert "put back" in str(caught.value) and str(target) in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir() if "live-site" in p.name) == ["live-site"]
    assert leftovers(work_dir) == []


def test_a_restore_into_a_new_path_failing_validation_after_the_swap_leaves_nothing(
    backed_up: Any, swap: str, store: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a target path where nothing exists yet
    target = tmp_path / "new-site"

    # when a restore into it fails validation after the swap
    with pytest.raises(ValidationError) as caught:
        RestoreService(backed_up, store).restore("site", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the path is empty again, and the error says the restored copy was removed
    assert not target.exists()
    assert "removed" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir() if "new-site" in p.name) == []
    assert leftovers(work_dir) == []
