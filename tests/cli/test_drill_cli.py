"""`backstop drill` and what `list` and `show` say about drills, on moto with real SQLite files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import zstandard

from backstop.adapters.s3_store import S3Store
from tests.cli.test_commands import AT, BACKUP_ID, Cli
from tests.services import corrupt_table, replace_artifact


def test_a_drill_passes_and_list_and_show_say_so(cli: Cli, work_dir: Path) -> None:
    assert cli("backup", "orders", "--at", AT, "--type", "scheduled").exit_code == 0

    drilled = cli("drill", "orders", "--json")

    assert drilled.exit_code == 0, drilled.output
    record = json.loads(drilled.stdout)
    assert record["passed"] is True and record["backup_id"] == BACKUP_ID
    listed = cli("list", "orders")
    assert f"passed {record['started_at'][:10]}" in listed.stdout
    assert json.loads(cli("list", "orders", "--json").stdout)[0]["drill"]["passed"] is True
    shown = cli("show", "orders", BACKUP_ID)
    assert "drill" in shown.stdout and "restored and validated" in shown.stdout
    assert [p for p in work_dir.iterdir() if p.name.startswith("backstop-drill")] == []


def test_a_drill_of_a_broken_backup_exits_1_and_is_recorded(
    cli: Cli,
    s3: Any,
    store: S3Store,
    tmp_path: Path,
) -> None:
    # given a backup rewritten consistently around a damaged database (its checksums match)
    assert cli("backup", "orders", "--at", AT, "--type", "scheduled").exit_code == 0
    manifest = store.get_manifest(BACKUP_ID)
    broken = tmp_path / "broken.db"
    stored = s3.get_object(Bucket=manifest.object.bucket, Key=manifest.object.key)["Body"].read()
    broken.write_bytes(zstandard.ZstdDecompressor().decompressobj().decompress(stored))
    corrupt_table(broken)
    raw = broken.read_bytes()
    replace_artifact(s3, store, manifest, zstandard.compress(raw), raw=raw)

    drilled = cli("drill", "orders")

    assert drilled.exit_code == 1
    assert "FAILED" in drilled.stdout and "integrity_check" in drilled.stdout
    assert "FAILED" in cli("list", "orders").stdout
    assert "never drilled" not in cli("show", "orders", BACKUP_ID).stdout


def test_a_backup_never_drilled_says_so(cli: Cli) -> None:
    assert cli("backup", "orders", "--at", AT, "--type", "scheduled").exit_code == 0
    assert "never drilled" in cli("show", "orders", BACKUP_ID).stdout


def test_sweep_reports_intact_backups_then_catches_a_flipped_byte(cli: Cli, store: S3Store) -> None:
    from local.emulator import flip_byte

    assert cli("backup", "orders", "--at", AT, "--type", "scheduled").exit_code == 0
    clean = cli("sweep", "--json")
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["passed"] == [BACKUP_ID]

    manifest = store.get_manifest(BACKUP_ID)
    flip_byte(manifest.object.bucket, manifest.object.key, manifest.object.version_id)
    found = cli("sweep", "--budget", "1")

    assert found.exit_code == 1
    assert f"corrupt {BACKUP_ID}" in found.stdout
