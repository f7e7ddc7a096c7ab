"""The backup path end to end through the services, on moto and a real SQLite file."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from backstop.services.restore import RestoreService
from backstop.services.verify import VerifyService
from tests.conftest import table_rows


def test_backup_verify_restore_round_trip(make_config: Any, store: Any, orders_db: Path, tmp_path: Path) -> None:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    at = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)

    outcome = BackupService(config, store).run(
        BackupRequest("orders", at, "scheduled", Trigger(kind="schedule", by="test"))
    )
    VerifyService(config, store).verify("orders", outcome.manifest.backup_id)
    target = tmp_path / "restored.db"
    RestoreService(config, store).restore("orders", "latest", target, dry_run=False, confirm=lambda _p: True)

    assert outcome.created
    assert outcome.manifest.backup_id == "orders-20261121T020000Z"
    assert outcome.manifest.tables["orders"].rows == 1000
    assert outcome.manifest.schema_version == "schema_migrations:20260315120000"
    assert table_rows(target) == table_rows(orders_db)
