"""The workflow tests' shared setting: a source database and a staging target with other data."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import create_orders_db


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return {
        "source": create_orders_db(tmp_path / "orders.db", rows=400),
        "staging": create_orders_db(tmp_path / "staging.db", rows=15),
        "work": tmp_path / "work",
    }
