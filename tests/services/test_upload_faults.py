"""Faults on the way to S3 (RELIABILITY.md "Upload"): a part refused mid-stream, and stored bytes that
differ from what was streamed. Each must fail the run with nothing committed and `latest` unchanged."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from backstop.errors import BackstopError, ChecksumMismatchError, UploadError
from tests.services import (
    RecordingNotifier,
    at,
    blob_database,
    failure_records,
    lock_is_held,
    open_uploads,
    run_backup,
    versions_of,
)

TONIGHT = "orders-20261121T020000Z"


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    """A database of about 11 MiB of incompressible rows: three parts of the 5 MiB test part size."""
    return blob_database(tmp_path / "big.db", 176)


def tamper_parts(store: Any, monkeypatch: pytest.MonkeyPatch, change: Callable[[dict[str, Any]], Any]) -> list[int]:
    """Route every upload_part through ``change(kwargs)`` (which may alter the body or raise); returns the part
    numbers seen."""
    real = store.client.upload_part
    seen: list[int] = []

    def upload_part(**kwargs: Any) -> Any:
        seen.append(kwargs["PartNumber"])
        change(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(store.client, "upload_part", upload_part)
    return seen


def connection_lost_on_part_2(kwargs: dict[str, Any]) -> None:
    if kwargs["PartNumber"] == 2:
        raise ClientError({"Error": {"Code": "RequestTimeout", "Message": "connection lost"}}, "UploadPart")


def drop_last_byte(kwargs: dict[str, Any]) -> None:
    kwargs["Body"] = kwargs["Body"][:-1]


def flip_a_byte(kwargs: dict[str, Any]) -> None:
    body = bytearray(kwargs["Body"])
    body[len(body) // 2] ^= 0x01
    kwargs["Body"] = bytes(body)  # the part's ChecksumSHA256 header still describes the original bytes


def test_a_part_lost_mid_stream_aborts_the_upload_and_commits_nothing(
    make_config: Any, store: Any, s3: Any, big_db: Path, monkeypatch: pytest.MonkeyPatch, work_dir: Path
) -> None:
    # given a committed backup from yesterday, and S3 failing the second part of tonight's upload
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(big_db)})
    yesterday = run_backup(config, store, at(20)).manifest
    assert yesterday.object.parts == 3
    seen = tamper_parts(store, monkeypatch, connection_lost_on_part_2)
    notifier = RecordingNotifier()

    # when tonight's backup runs
    with pytest.raises(UploadError) as caught:
        run_backup(config, store, at(21), notifier=notifier)

    # then the failure says the upload was aborted, and nothing of tonight is left in the bucket
    assert 2 in seen
    assert "the upload was aborted" in str(caught.value)
    assert open_uploads(s3) == []
    assert versions_of(s3, store.object_key(TONIGHT, "sqlite.zst")) == []
    assert not store.manifest_exists(TONIGHT)
    assert store.newest_backup_id("orders") == yesterday.backup_id
    assert not lock_is_held(s3)
    assert [r["error"] for r in failure_records(s3)] == ["UploadError"]
    assert [a["error"] for _, a in notifier.alerts] == ["UploadError"]
    assert os.listdir(work_dir) == []


STORED_FAULTS = [
    pytest.param(drop_last_byte, "were streamed; the upload is not trusted", id="stored-size-differs"),
    pytest.param(flip_a_byte, "differs from the 1-part checksum of what was streamed", id="stored-checksum-differs"),
]


@pytest.mark.parametrize(("fault", "reason"), STORED_FAULTS)
def test_stored_bytes_that_differ_from_the_stream_are_never_committed(
    fault: Callable[[dict[str, Any]], None],
    reason: str,
    make_config: Any,
    store: Any,
    s3: Any,
    orders_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a committed backup from yesterday, and tonight's bytes altered between the stream and S3
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    yesterday = run_backup(config, store, at(20)).manifest
    tamper_parts(store, monkeypatch, fault)

    # when tonight's backup runs
    with pytest.raises(ChecksumMismatchError) as caught:
        run_backup(config, store, at(21))

    # then the check after upload catches it: no manifest, latest unchanged, the failure recorded
    assert reason in str(caught.value)
    assert not store.manifest_exists(TONIGHT)
    assert store.newest_backup_id("orders") == yesterday.backup_id
    assert open_uploads(s3) == []
    assert [r["error"] for r in failure_records(s3)] == ["ChecksumMismatchError"]


@pytest.mark.parametrize(("fault", "reason"), STORED_FAULTS)
def test_stored_bytes_that_differ_from_the_stream_leave_no_object_behind(
    fault: Callable[[dict[str, Any]], None],
    reason: str,
    make_config: Any,
    store: Any,
    s3: Any,
    orders_db: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given tonight's bytes altered between the stream and S3
    config = make_config({"name": "orders", "engine": "sqlite", "path": str(orders_db)})
    tamper_parts(store, monkeypatch, fault)

    # when the backup runs and the check after upload fails
    with pytest.raises(BackstopError, match=reason):
        run_backup(config, store, at(21))

    # then the untrusted version was deleted, as backup.py promises ("or deletes the uncommitted version")
    assert versions_of(s3, store.object_key(TONIGHT, "sqlite.zst")) == []
