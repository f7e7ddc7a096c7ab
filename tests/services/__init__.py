"""Helpers shared by the service, engine and CLI tests: take a backup, read the bucket, inject faults into moto.

They live here (not in tests/conftest.py) so the engine and CLI suites can import them too.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.manifest import Manifest, Trigger
from backstop.ports import Notifier
from backstop.services.backup import BackupOutcome, BackupRequest, BackupService
from tests.conftest import BUCKET


def at(day: int, hour: int = 2) -> datetime:
    """A scheduled time in November 2026 (UTC)."""
    return datetime(2026, 11, day, hour, 0, tzinfo=UTC)


def run_backup(
    config: Config,
    store: S3Store,
    when: datetime,
    *,
    database: str = "orders",
    notifier: Notifier | None = None,
) -> BackupOutcome:
    """One scheduled backup of ``database`` for ``when``, through the real service."""
    service = BackupService(config, store, notifier=notifier)
    return service.run(BackupRequest(database, when, "scheduled", Trigger(kind="schedule", by="test")))


class RecordingNotifier:
    """An in-memory notifier: the alerts a run published, in order."""

    def __init__(self) -> None:
        self.alerts: list[tuple[str, dict[str, object]]] = []

    def publish(self, subject: str, message: dict[str, object]) -> None:
        self.alerts.append((subject, message))


# -- reading the bucket ------------------------------------------------------------------------


def keys_under(s3: Any, prefix: str) -> list[str]:
    """Current (visible) keys under ``prefix``."""
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])]


def versions_of(s3: Any, key: str) -> list[str]:
    """Every stored version id of exactly ``key`` (delete markers excluded)."""
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def open_uploads(s3: Any) -> list[dict[str, Any]]:
    """Multipart uploads started and neither completed nor aborted."""
    return list(s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []))


def failure_records(s3: Any, database: str = "orders") -> list[dict[str, Any]]:
    """The failure records of ``database`` (what `backstop stats` counts)."""
    return [
        json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        for key in keys_under(s3, f"backups/_failures/{database}/")
    ]


def lock_is_held(s3: Any, database: str = "orders") -> bool:
    return bool(keys_under(s3, f"backups/_locks/{database}.backup.json"))


def leftovers(path: Path) -> list[str]:
    """Everything inside ``path`` (a work dir or a target's directory), as relative names."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# -- fault injection ---------------------------------------------------------------------------


def rot_object(key: str, version_id: str | None, new_bytes: bytes, *, bucket: str = BUCKET) -> None:
    """Replace the bytes of one stored object version in place, the way bit rot on the medium would.

    Same key, same VersionId, same recorded ETag and S3 checksum: only the content changes. Nothing
    in the S3 API can do that (every put creates a new version, which a manifest pinning its
    VersionId would simply ignore), so this reaches into moto's backend, which is the storage medium.
    """
    stored = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object(bucket, key, version_id=version_id)
    assert stored is not None, f"no version {version_id} of {key} in moto"
    stored.value = new_bytes


def stored_bytes(s3: Any, manifest: Manifest) -> bytes:
    """The exact object version a manifest pins."""
    return bytes(
        s3.get_object(Bucket=BUCKET, Key=manifest.object.key, VersionId=manifest.object.version_id)["Body"].read()
    )


def write_manifest(s3: Any, store: S3Store, manifest: Manifest) -> None:
    """Overwrite the committed manifest of ``manifest.backup_id`` with ``manifest`` (sealed by ``to_json``)."""
    s3.put_object(Bucket=BUCKET, Key=store.manifest_key(manifest.backup_id), Body=manifest.to_json())


def edit_manifest_json(s3: Any, store: S3Store, backup_id: str, edit: Any) -> None:
    """Change the stored manifest JSON with ``edit(dict)`` and write it back without resealing it."""
    key = store.manifest_key(backup_id)
    data = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    edit(data)
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(data, indent=2).encode())


def replace_artifact(
    s3: Any, store: S3Store, manifest: Manifest, stored: bytes, *, raw: bytes | None = None
) -> Manifest:
    """Commit ``stored`` as the artifact of ``manifest.backup_id``: a new object version and a manifest
    that pins it, consistent and sealed, exactly as a faulty or malicious writer with bucket access
    could produce. ``raw`` sets the recorded raw stream; without it the recorded raw size is kept
    (what a decompression bomb exploits).
    """
    response = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=stored)
    update: dict[str, Any] = {
        "object": manifest.object.model_copy(
            update={
                "version_id": response["VersionId"],
                "size": len(stored),
                "sha256": hashlib.sha256(stored).hexdigest(),
                "parts": 1,
            }
        )
    }
    if raw is not None:
        update["raw"] = manifest.raw.model_copy(update={"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    forged = manifest.model_copy(update=update).sealed()
    write_manifest(s3, store, forged)
    return forged


def corrupt_table(path: Path, table: str = "orders") -> None:
    """Overwrite the cell area of one leaf page of ``table`` so PRAGMA integrity_check reports errors.

    The leaf is the right-most child of the table's (interior) root page; page 1, the schema, is left
    intact, so the database still opens and the online backup API still copies it page by page.
    """
    with closing(sqlite3.connect(path)) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        root = int(conn.execute("SELECT rootpage FROM sqlite_schema WHERE name = ?", (table,)).fetchone()[0])
    data = bytearray(path.read_bytes())
    root_offset = (root - 1) * page_size
    assert data[root_offset] == 0x05, "expected an interior table page: give the table more rows"
    leaf = int.from_bytes(data[root_offset + 8 : root_offset + 12], "big")
    leaf_end = leaf * page_size
    data[leaf_end - 1024 : leaf_end] = b"\xff" * 1024
    path.write_bytes(bytes(data))


def blob_database(path: Path, blobs: int) -> Path:
    """A SQLite database of ``blobs`` incompressible 64 KiB rows: its size is known in parts and chunks."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
        conn.executemany("INSERT INTO blobs (data) VALUES (?)", [(os.urandom(64 * 1024),) for _ in range(blobs)])
        conn.commit()
    return path
