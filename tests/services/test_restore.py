"""Local restores of SQLite backups: dry run, confirmation, pre-restore copy, validation and rollback."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backstop.engines import sqlite as sqlite_engine
from backstop.engines.base import Inspection
from backstop.errors import BackupNotFoundError, InvalidNameError, RestoreError, ValidationError
from backstop.manifest import TableStat
from backstop.services.restore import RestorePlan, RestoreService
from tests.conftest import create_orders_db, table_rows
from tests.services import at, leftovers, run_backup

RESTORED_AT = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
PRE_RESTORE_NAME = "app.db.pre-restore-20261122T093000Z"


@pytest.fixture
def backed_up(make_config: Any, store: Any, orders_db: Path) -> Any:
    """A config whose 'orders' database has one committed backup (1000 orders)."""
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    run_backup(config, store, at(21))
    return config


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """An existing database at the restore target: different content from the backup (25 orders)."""
    live = tmp_path / "live"
    live.mkdir()
    return create_orders_db(live / "app.db", rows=25)


def service(config: Any, store: Any) -> RestoreService:
    return RestoreService(config, store, clock=lambda: RESTORED_AT)


def never_asked(plan: RestorePlan) -> bool:
    raise AssertionError(f"confirmation was requested for {plan.manifest.backup_id}")


def test_dry_run_verifies_and_plans_but_changes_nothing(
    backed_up: Any, store: Any, target: Path, work_dir: Path
) -> None:
    # given an existing target
    before = target.read_bytes()

    # when a dry run is requested
    outcome = service(backed_up, store).restore("orders", "latest", target, dry_run=True, confirm=never_asked)

    # then the plan describes both sides, and nothing was replaced, copied or asked
    assert not outcome.restored
    assert outcome.plan.manifest.backup_id == "orders-20261121T020000Z"
    assert outcome.plan.target_exists
    assert outcome.plan.current is not None and outcome.plan.current["orders"] == 25
    assert outcome.plan.manifest.tables["orders"].rows == 1000
    assert target.read_bytes() == before
    assert not (target.parent / PRE_RESTORE_NAME).exists()
    assert set(leftovers(target.parent)) == {"app.db"}  # reading the WAL target's counts left no -wal/-shm
    assert leftovers(work_dir) == []


def test_dry_run_does_not_create_a_missing_target(backed_up: Any, store: Any, tmp_path: Path, work_dir: Path) -> None:
    # given a target path where nothing exists yet
    target = tmp_path / "new.db"

    # when a dry run is requested
    outcome = service(backed_up, store).restore("orders", "latest", target, dry_run=True, confirm=never_asked)

    # then it still does not exist, and the directory holds nothing new
    assert not outcome.restored
    assert not outcome.plan.target_exists
    assert outcome.plan.pre_restore is None
    assert leftovers(work_dir) == []
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith((".new.db", "new.db"))] == []


def test_a_declined_confirmation_leaves_the_target_untouched(backed_up: Any, store: Any, target: Path) -> None:
    # given an existing target
    before = table_rows(target)
    shown: list[RestorePlan] = []

    # when the operator declines the plan
    outcome = service(backed_up, store).restore(
        "orders", "latest", target, dry_run=False, confirm=lambda plan: shown.append(plan) or False
    )

    # then the plan was shown and nothing changed
    assert [p.manifest.backup_id for p in shown] == ["orders-20261121T020000Z"]
    assert not outcome.restored
    assert table_rows(target) == before
    assert not (target.parent / PRE_RESTORE_NAME).exists()


def test_restore_into_an_existing_target_keeps_the_old_one_and_installs_the_backup(
    backed_up: Any, store: Any, target: Path, orders_db: Path, work_dir: Path
) -> None:
    # given an existing target with other data
    old_rows = table_rows(target)

    # when the backup is restored over it
    outcome = service(backed_up, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the target holds exactly the backed-up data, the old data is kept beside it, and no temp file remains
    assert outcome.restored
    assert table_rows(target) == table_rows(orders_db)
    pre_restore = target.parent / PRE_RESTORE_NAME
    assert outcome.plan.pre_restore == pre_restore
    assert table_rows(pre_restore) == old_rows
    assert not [name for name in leftovers(target.parent) if name.endswith(".tmp")]
    assert leftovers(work_dir) == []
    with closing(sqlite3.connect(target)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_restore_folds_the_targets_uncheckpointed_wal_into_the_pre_restore_copy(
    backed_up: Any, store: Any, target: Path
) -> None:
    # given a WAL target, open in another process-like connection, whose latest commit is only in its -wal
    writer = sqlite3.connect(target, isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")
    writer.execute("INSERT INTO orders (customer_id, amount_cents, note) VALUES (1, 4242, 'only in the wal')")
    try:
        assert Path(f"{target}-wal").stat().st_size > 0
        old_rows = table_rows(target)

        # when the backup is restored over it
        service(backed_up, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)
    finally:
        writer.close()

    # then the pre-restore copy has every committed row of the old target, including the one in the WAL
    kept = table_rows(target.parent / PRE_RESTORE_NAME)
    assert kept == old_rows
    assert [r for r in kept["orders"] if r[2] == 4242] == [(26, 1, 4242, "only in the wal")]


def test_restore_into_a_new_path_creates_it(backed_up: Any, store: Any, tmp_path: Path, orders_db: Path) -> None:
    # given a target path where nothing exists yet
    target = tmp_path / "fresh.db"

    # when the backup is restored there
    outcome = service(backed_up, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then it holds the backed-up data and no pre-restore copy was invented
    assert outcome.restored
    assert outcome.plan.pre_restore is None
    assert table_rows(target) == table_rows(orders_db)
    assert not list(tmp_path.glob("fresh.db.pre-restore-*"))


def lying_inspection_of(target: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the engine's post-restore inspection of ``target`` report one order too many (a validation mismatch)."""
    real = sqlite_engine.inspect_database

    def inspect(path: Path, **kwargs: Any) -> Inspection:
        found = real(path, **kwargs)
        if Path(path).resolve() != target.resolve():
            return found
        tables = dict(found.tables)
        tables["orders"] = TableStat(rows=tables["orders"].rows + 1)
        return Inspection(integrity=found.integrity, tables=tables, schema_version=found.schema_version)

    monkeypatch.setattr(sqlite_engine, "inspect_database", inspect)


def test_a_restore_failing_post_restore_validation_puts_the_old_target_back(
    backed_up: Any, store: Any, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an existing target, and a post-restore validation that will find a row-count mismatch
    old_rows = table_rows(target)
    lying_inspection_of(target, monkeypatch)

    # when the backup is restored over it
    with pytest.raises(ValidationError) as caught:
        service(backed_up, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then the error names the mismatch and the rollback, and the target holds its old data again
    message = str(caught.value)
    assert "orders: 1000 expected, 1001 found" in message
    assert "put back" in message
    monkeypatch.undo()
    assert table_rows(target) == old_rows
    assert table_rows(target.parent / PRE_RESTORE_NAME) == old_rows
    assert not [name for name in leftovers(target.parent) if name.endswith(".tmp")]


def test_a_restore_into_a_new_path_failing_validation_leaves_nothing(
    backed_up: Any, store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a new target path and a post-restore validation that will fail
    target = tmp_path / "fresh.db"
    lying_inspection_of(target, monkeypatch)

    # when the backup is restored there
    with pytest.raises(ValidationError):
        service(backed_up, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    # then no half-validated database is left at the target
    assert not target.exists()


def test_restore_refuses_a_target_whose_directory_does_not_exist(backed_up: Any, store: Any, tmp_path: Path) -> None:
    # when the target's directory is missing
    with pytest.raises(RestoreError, match="does not exist"):
        service(backed_up, store).restore(
            "orders", "latest", tmp_path / "nowhere" / "app.db", dry_run=False, confirm=never_asked
        )

    # then nothing was created
    assert not (tmp_path / "nowhere").exists()


def test_restore_of_an_unknown_backup_id_says_it_was_never_committed(backed_up: Any, store: Any, target: Path) -> None:
    before = target.read_bytes()

    with pytest.raises(BackupNotFoundError, match="never committed"):
        service(backed_up, store).restore(
            "orders", "orders-20200101T000000Z", target, dry_run=False, confirm=never_asked
        )

    assert target.read_bytes() == before


def test_restore_refuses_a_backup_id_of_another_database(backed_up: Any, store: Any, target: Path) -> None:
    with pytest.raises(InvalidNameError, match="does not belong to database 'orders'"):
        service(backed_up, store).restore(
            "orders", "ledger-20261121T020000Z", target, dry_run=False, confirm=never_asked
        )
