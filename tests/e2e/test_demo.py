"""`make demo`'s scenario, asserted on its outcomes (not on its printed text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.demo import run


@pytest.mark.xdist_group("emulator")
def test_demo_backs_up_catches_damage_and_restores_equal_data(tmp_path: Path) -> None:
    result = run(tmp_path / "demo")

    assert result.ok, [step for step in result.steps if not step[1]]
    assert result.corrupt_verify_exit == 1
    assert "SHA-256" in result.corrupt_verify_message
    assert result.sqlite_equal
    assert result.files_equal
    assert set(result.backups) == {"shop", "uploads", "shop-copy"}
    assert result.alerts == []  # nothing failed on the backup path, so nothing was alerted
