"""verify and restore against damaged artifacts (RELIABILITY.md "Artifacts and names").

Every fault is injected into a real committed backup on moto; each must fail `verify` with a named
reason, and a restore of the same backup must refuse before touching an existing target.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from backstop.errors import (
    BackstopError,
    BackupNotFoundError,
    ChecksumMismatchError,
    DecompressionBombError,
    ManifestError,
)
from backstop.manifest import Manifest
from backstop.pipeline import StreamDigest, compress_stream, decompress_stream
from backstop.services.restore import RestoreService
from backstop.services.verify import VerifyService
from tests.conftest import BUCKET, create_orders_db
from tests.services import (
    at,
    edit_manifest_json,
    leftovers,
    replace_artifact,
    rot_object,
    run_backup,
    stored_bytes,
    write_manifest,
)

BACKUP_ID = "orders-20261121T020000Z"
MIB = 1024 * 1024


def flip_one_byte(s3: Any, store: Any, m: Manifest) -> None:
    data = bytearray(stored_bytes(s3, m))
    data[len(data) // 2] ^= 0x01
    rot_object(m.object.key, m.object.version_id, bytes(data))


def truncate_object(s3: Any, store: Any, m: Manifest) -> None:
    rot_object(m.object.key, m.object.version_id, stored_bytes(s3, m)[: m.object.size // 2])


def delete_object_version(s3: Any, store: Any, m: Manifest) -> None:
    s3.delete_object(Bucket=BUCKET, Key=m.object.key, VersionId=m.object.version_id)


def delete_manifest(s3: Any, store: Any, m: Manifest) -> None:
    s3.delete_object(Bucket=BUCKET, Key=store.manifest_key(m.backup_id))


def manifest_records_another_size(s3: Any, store: Any, m: Manifest) -> None:
    write_manifest(s3, store, m.model_copy(update={"object": m.object.model_copy(update={"size": m.object.size + 1})}))


def manifest_records_another_sha256(s3: Any, store: Any, m: Manifest) -> None:
    other = hashlib.sha256(b"some other artifact").hexdigest()
    write_manifest(s3, store, m.model_copy(update={"object": m.object.model_copy(update={"sha256": other})}))


def manifest_edited_without_resealing(s3: Any, store: Any, m: Manifest) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["tables"]["orders"]["rows"] = 999

    edit_manifest_json(s3, store, m.backup_id, edit)


def manifest_truncated(s3: Any, store: Any, m: Manifest) -> None:
    s3.put_object(Bucket=BUCKET, Key=store.manifest_key(m.backup_id), Body=m.to_json()[:200])


def decompression_bomb(s3: Any, store: Any, m: Manifest) -> None:
    """A few KiB of zstd that expand to 64 MiB of zeros, committed consistently under the old raw size."""
    bomb = zstandard.ZstdCompressor(level=19).compress(bytes(64 * MIB))
    assert len(bomb) < m.raw.size  # tiny on the wire
    replace_artifact(s3, store, m, bomb)


@dataclass(frozen=True)
class Fault:
    inject: Callable[[Any, Any, Manifest], None]
    error: type[BackstopError]
    reason: str


FAULTS = [
    pytest.param(Fault(flip_one_byte, ChecksumMismatchError, "the stored bytes were altered"), id="flipped-byte"),
    pytest.param(Fault(truncate_object, ChecksumMismatchError, "(truncated or replaced)"), id="truncated-object"),
    pytest.param(
        Fault(delete_object_version, ChecksumMismatchError, "is missing from the bucket"), id="missing-object"
    ),
    pytest.param(Fault(delete_manifest, BackupNotFoundError, "has no manifest"), id="missing-manifest"),
    pytest.param(
        Fault(manifest_records_another_size, ChecksumMismatchError, "but the manifest records"), id="manifest-size"
    ),
    pytest.param(
        Fault(manifest_records_another_sha256, ChecksumMismatchError, "the stored bytes were altered"),
        id="manifest-sha256",
    ),
    pytest.param(
        Fault(manifest_edited_without_resealing, ManifestError, "fails its own checksum"), id="manifest-self-checksum"
    ),
    pytest.param(Fault(manifest_truncated, ManifestError, "is not valid JSON"), id="manifest-truncated"),
    pytest.param(
        Fault(decompression_bomb, DecompressionBombError, "decompresses past its recorded raw size"),
        id="decompression-bomb",
    ),
]


@pytest.fixture
def committed(make_config: Any, store: Any, orders_db: Path) -> tuple[Any, Manifest]:
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    manifest = run_backup(config, store, at(21)).manifest
    assert manifest.backup_id == BACKUP_ID
    return config, manifest


def test_verify_passes_on_an_intact_backup(committed: tuple[Any, Manifest], store: Any, work_dir: Path) -> None:
    # given an untouched committed backup
    config, manifest = committed

    # when it is verified
    report = VerifyService(config, store).verify("orders", BACKUP_ID)

    # then every check is listed as passed (the control for the fault cases below)
    names = [name for name, _ in report.checks]
    assert names == [
        "manifest checksum",
        "stored size",
        "stored SHA-256",
        "decompressed",
        "integrity_check",
        "row counts",
        "current version",
    ]
    assert dict(report.checks)["row counts"] == f"{len(manifest.tables)} tables match the manifest"
    assert leftovers(work_dir) == []


@pytest.mark.parametrize("fault", FAULTS)
def test_a_damaged_backup_fails_verify_with_a_named_reason_and_restore_refuses_it(
    fault: Fault, committed: tuple[Any, Manifest], store: Any, s3: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a committed backup damaged in one way, and an existing target database in its own directory
    config, manifest = committed
    fault.inject(s3, store, manifest)
    target_dir = tmp_path / "live"
    target_dir.mkdir()
    target = create_orders_db(target_dir / "app.db", rows=25)
    before = target.read_bytes()
    asked: list[object] = []

    # when it is verified, and restored over the target
    with pytest.raises(fault.error) as verified:
        VerifyService(config, store).verify("orders", BACKUP_ID)
    with pytest.raises(fault.error) as restored:
        RestoreService(config, store).restore(
            "orders", BACKUP_ID, target, dry_run=False, confirm=lambda plan: asked.append(plan) or True
        )

    # then both fail with the fault's kind and say what is wrong
    for caught in (verified, restored):
        assert type(caught.value) is fault.error
        assert fault.reason in str(caught.value)
    # and the target is byte for byte what it was, no pre-restore copy or staging file exists,
    # nobody was asked to approve, and the work dir is clean. (Reading the target's row counts for
    # the plan opens it read-only, which in WAL mode may leave an empty -wal and a -shm beside it.)
    assert target.read_bytes() == before
    assert set(leftovers(target_dir)) <= {"app.db", "app.db-wal", "app.db-shm"}
    assert not Path(f"{target}-wal").exists() or Path(f"{target}-wal").stat().st_size == 0
    assert asked == []
    assert leftovers(work_dir) == []


def test_verify_of_latest_without_any_backup_says_how_to_make_one(
    make_config: Any, store: Any, orders_db: Path
) -> None:
    # given a configured database that was never backed up
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})

    # when latest is verified
    with pytest.raises(BackupNotFoundError) as caught:
        VerifyService(config, store).verify("orders", "latest")

    # then the message says what to do
    assert "backstop backup orders" in str(caught.value)


def test_decompression_stops_at_the_recorded_raw_size() -> None:
    # given a small raw stream recorded in the manifest and stored bytes that expand to 64 MiB
    bomb = zstandard.ZstdCompressor().compress(bytes(64 * MIB))
    expected = StreamDigest(4096, hashlib.sha256(bytes(4096)).hexdigest(), len(bomb), hashlib.sha256(bomb).hexdigest())
    written = 0

    def sink(chunk: bytes) -> None:
        nonlocal written
        written += len(chunk)

    # when it is decompressed
    with pytest.raises(DecompressionBombError):
        decompress_stream(iter([bomb]), sink, algorithm="zstd", expected=expected, what="Backup x")

    # then no more than the recorded raw size ever reached the sink
    assert written <= expected.raw_size


@pytest.mark.parametrize("algorithm", ["zstd", "gzip"])
def test_a_flipped_byte_is_named_as_such_not_as_a_decompression_error(algorithm: Any) -> None:
    # given a compressed stream with one byte flipped in the middle
    import io

    stored = bytearray()
    digest = compress_stream(io.BytesIO(bytes(range(256)) * 4096), stored.extend, algorithm=algorithm, level=3)
    stored[len(stored) // 2] ^= 0x40

    # when it is decompressed against its digest
    with pytest.raises(ChecksumMismatchError, match="the stored bytes were altered"):
        decompress_stream(iter([bytes(stored)]), lambda _c: None, algorithm=algorithm, expected=digest, what="B")
