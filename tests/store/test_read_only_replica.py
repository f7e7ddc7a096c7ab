"""A store that reads a replica refuses every write before it reaches S3."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.errors import ReadOnlyReplicaError
from backstop.ports import ObjectVersion, RunLock
from tests.conftest import BUCKET
from tests.replication import REPLICA, create_replica_bucket
from tests.unit.test_manifest import sample_manifest

BACKUP_ID = "orders-20261121T020000Z"
NOW = datetime(2026, 11, 21, 2, tzinfo=UTC)
KEY = "backups/orders/2026/11/21/orders-20261121T020000Z.sqlite.zst"

WRITES: dict[str, Callable[[S3Store], object]] = {
    "upload": lambda store: store.upload(KEY, {}),
    "delete_version": lambda store: store.delete_version(KEY, "v1"),
    "put_manifest": lambda store: store.put_manifest(sample_manifest(BACKUP_ID), {}),
    "put_sidecar": lambda store: store.put_sidecar(sample_manifest(BACKUP_ID), "drill", {"passed": True}),
    "put_last_drill_success": lambda store: store.put_last_drill_success("orders", {"passed": True}),
    "acquire_run_lock": lambda store: store.acquire_run_lock("orders", "me", NOW, timedelta(hours=1)),
    "release_run_lock": lambda store: store.release_run_lock(RunLock("orders", "me", '"etag"')),
    "record_failure": lambda store: store.record_failure("orders", BACKUP_ID, NOW, RuntimeError("x")),
    "put_object_tags": lambda store: store.put_object_tags(KEY, "v1", {"backstop:tier": "daily"}),
    "copy_version": lambda store: store.copy_version(KEY, "v1", "backups/_quarantine/x"),
    "remove_version": lambda store: store.remove_version(ObjectVersion(KEY, "v1", True, False)),
}


@pytest.mark.parametrize("write", sorted(WRITES))
def test_a_replica_store_refuses_every_write_and_the_replica_stays_empty(write: str, s3: Any) -> None:
    # given a store reading the replica of the vault
    replica_s3 = create_replica_bucket()
    store = S3Store(replica_s3, bucket=REPLICA, prefix="backups", replica_of=BUCKET)

    # when it is asked to write
    with pytest.raises(ReadOnlyReplicaError, match=f"s3://{REPLICA} is the replica of s3://{BUCKET}"):
        WRITES[write](store)

    # then nothing reached the replica
    assert "Versions" not in replica_s3.list_object_versions(Bucket=REPLICA)
    assert not replica_s3.list_multipart_uploads(Bucket=REPLICA).get("Uploads")
