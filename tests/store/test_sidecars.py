"""Sidecars: records written beside a committed backup (its drill, its sweep), never in its manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backstop.adapters.s3_store import S3Store
from tests.conftest import BUCKET, create_orders_db
from tests.services import at, run_backup


def sqlite_db(path: Path) -> dict[str, Any]:
    return {"name": "orders", "engine": "sqlite", "path": str(path)}


def test_a_sidecar_sits_beside_the_manifest_tagged_like_the_backup_and_leaves_it_unchanged(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path
) -> None:
    config = make_config(sqlite_db(create_orders_db(tmp_path / "orders.db", rows=20)))
    manifest = run_backup(config, store, at(21)).manifest
    manifest_before = s3.get_object(Bucket=BUCKET, Key=store.manifest_key(manifest.backup_id))["Body"].read()

    assert store.get_sidecar(manifest.backup_id, "drill") is None
    store.put_sidecar(manifest, "drill", {"passed": True, "seconds": 1.5})
    store.put_sidecar(manifest, "drill", {"passed": False, "seconds": 2.0})  # the latest replaces the last

    key = store.sidecar_key(manifest.backup_id, "drill")
    assert key == store.manifest_key(manifest.backup_id).replace(".manifest.json", ".drill.json")
    assert store.get_sidecar(manifest.backup_id, "drill") == {"passed": False, "seconds": 2.0}
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=key)["TagSet"]}
    assert tags == store.tags_for("orders", "sqlite", manifest.retention_tier)  # expires with the backup
    assert s3.get_object(Bucket=BUCKET, Key=store.manifest_key(manifest.backup_id))["Body"].read() == manifest_before


def test_sidecars_change_neither_the_listing_nor_the_inventory(
    make_config: Any, store: S3Store, tmp_path: Path
) -> None:
    config = make_config(sqlite_db(create_orders_db(tmp_path / "orders.db", rows=20)))
    first = run_backup(config, store, at(20)).manifest
    second = run_backup(config, store, at(21)).manifest
    sizes = store.inventory("orders")

    store.put_sidecar(first, "sweep", {"ok": True})
    store.put_sidecar(second, "drill", {"ok": True})

    assert store.backup_ids("orders") == [first.backup_id, second.backup_id]
    assert (
        store.inventory("orders") == sizes == {first.backup_id: first.object.size, second.backup_id: second.object.size}
    )
    assert set(store.sidecar_times("orders", "sweep")) == {first.backup_id}
    assert set(store.sidecar_times("orders", "drill")) == {second.backup_id}
