"""Verified multipart uploads on moto: parts, checksums, encryption, tags, and every upload fault.

Faults are injected with botocore's own event system on the client, so the real adapter and the
real retry logic run: ``before-send`` fires inside botocore's retry loop (once per attempt),
``before-call`` fires once per API call, before any retry, and ``after-call`` can rewrite a response.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError, ConnectionClosedError

from backstop.adapters.s3_store import MIB, S3Store
from backstop.bootstrap import s3_client
from backstop.errors import ChecksumMismatchError, UploadError
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from backstop.services.verify import VerifyService
from tests.conftest import BUCKET, REGION

KEY = "backups/assets/2026/11/21/assets-20261121T020000Z.tar.zst"
AT = datetime(2026, 11, 21, 2, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def default_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The clients under test use botocore's defaults, whatever the developer's shell sets."""
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)


def composite_sha256(data: bytes, part_size: int) -> str:
    """S3's checksum of a multipart object: SHA-256 over the concatenated SHA-256 of each part."""
    digests = b"".join(hashlib.sha256(data[i : i + part_size]).digest() for i in range(0, len(data), part_size))
    return base64.b64encode(hashlib.sha256(digests).digest()).decode()


def upload(store: S3Store, data: bytes, key: str = KEY, tier: str = "daily") -> Any:
    tags = store.tags_for("assets", "files", tier)  # type: ignore[arg-type]  # tier literal
    with store.upload(key, tags) as multipart:
        for i in range(0, len(data), MIB):
            multipart.write(data[i : i + MIB])
        return multipart.complete()


def part_number(request: Any) -> int:
    return int(parse_qs(urlparse(request.url).query)["partNumber"][0])


def nothing_left(s3: Any) -> bool:
    """No object version, delete marker or unfinished multipart upload anywhere in the bucket."""
    versions = s3.list_object_versions(Bucket=BUCKET)
    uploads = s3.list_multipart_uploads(Bucket=BUCKET)
    return not (versions.get("Versions") or versions.get("DeleteMarkers") or uploads.get("Uploads"))


class _Raw:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_kwargs: Any) -> Any:
        yield self._body


def s3_error(request: Any, status: int, code: str) -> AWSResponse:
    body = f"<Error><Code>{code}</Code><Message>injected by the test</Message></Error>".encode()
    return AWSResponse(request.url, status, {"Content-Type": "application/xml"}, _Raw(body))


@pytest.fixture
def assets(tmp_path: Path) -> Path:
    """A directory whose archive is about 12 MiB of incompressible bytes: three 5 MiB parts."""
    root = tmp_path / "assets"
    root.mkdir()
    (root / "blob.bin").write_bytes(os.urandom(12 * MIB))
    (root / "README").write_text("assets\n")
    return root


def backup_assets(make_config: Any, store: S3Store, assets: Path) -> Any:
    config = make_config({"name": "assets", "engine": "files", "path": str(assets)})
    service = BackupService(config, store, clock=lambda: AT)
    return config, service.run(BackupRequest("assets", AT, "scheduled", Trigger(kind="schedule", by="test")))


# -- what a good upload leaves in the bucket ------------------------------------------------------


def test_multipart_upload_is_checked_against_the_composite_sha256(store: S3Store, s3: Any) -> None:
    data = os.urandom(12 * MIB)

    result = upload(store, data)

    head = s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED")
    assert result.parts == 3
    assert head["ETag"].endswith('-3"')
    assert head["ChecksumSHA256"].partition("-")[0] == composite_sha256(data, 5 * MIB)
    assert result.s3_checksum_sha256 == head["ChecksumSHA256"]
    assert (result.size, result.version_id) == (len(data), head["VersionId"])
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data


def test_backup_manifest_records_the_version_and_parts_s3_holds(
    make_config: Any, store: S3Store, s3: Any, assets: Path
) -> None:
    _, outcome = backup_assets(make_config, store, assets)

    stored = outcome.manifest.object
    head = s3.head_object(Bucket=BUCKET, Key=stored.key, ChecksumMode="ENABLED")
    body = s3.get_object(Bucket=BUCKET, Key=stored.key, VersionId=stored.version_id)["Body"].read()
    assert re.fullmatch(r"backups/assets/2026/11/21/assets-20261121T020000Z\.[0-9a-f]{8}\.tar\.zst", stored.key)
    assert stored.parts == 3
    assert stored.version_id == head["VersionId"]
    assert stored.size == head["ContentLength"] == len(body)
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert stored.s3_checksum_sha256 == head["ChecksumSHA256"] == composite_sha256(body, 5 * MIB)
    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=stored.key)["TagSet"]}
    assert tags["backstop:tier"] == outcome.manifest.retention_tier == "yearly"  # the first backup ever


def test_small_stream_is_one_part(store: S3Store) -> None:
    result = upload(store, b"tiny backup")

    assert (result.parts, result.size) == (1, 11)


def test_empty_stream_still_completes_as_one_empty_part(store: S3Store, s3: Any) -> None:
    result = upload(store, b"")

    assert (result.parts, result.size) == (1, 0)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == b""


def test_upload_is_encrypted_with_the_configured_kms_key(s3: Any) -> None:
    key_arn = boto3.client("kms", region_name=REGION).create_key(Description="backstop")["KeyMetadata"]["Arn"]
    store = S3Store(s3, bucket=BUCKET, prefix="backups", kms_key_id=key_arn, part_size=5 * MIB, concurrency=2)

    result = upload(store, os.urandom(6 * MIB))

    head = s3.head_object(Bucket=BUCKET, Key=KEY)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == key_arn
    assert (result.encryption, result.kms_key_id) == ("aws:kms", key_arn)


def test_without_a_kms_key_the_bucket_default_applies(store: S3Store, s3: Any) -> None:
    result = upload(store, b"data")

    assert result.kms_key_id is None
    assert "SSEKMSKeyId" not in s3.head_object(Bucket=BUCKET, Key=KEY)


def test_objects_are_tagged_with_their_retention_tier(store: S3Store, s3: Any) -> None:
    upload(store, b"data", tier="monthly")

    tags = {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=BUCKET, Key=KEY)["TagSet"]}
    assert tags == {"backstop:tier": "monthly", "backstop:engine": "files", "backstop:database": "assets"}


# -- upload faults --------------------------------------------------------------------------------


def test_part_losing_its_connection_on_every_attempt_aborts_the_upload(store: S3Store, s3: Any) -> None:
    attempts: Counter[int] = Counter()

    def drop_part_two(request: Any, **_: Any) -> None:
        attempts[part_number(request)] += 1
        if part_number(request) == 2:
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.UploadPart", drop_part_two)

    with pytest.raises(UploadError, match="after retries") as caught:
        upload(store, os.urandom(12 * MIB))

    assert KEY in str(caught.value)
    assert attempts[2] == 3  # botocore's default (standard mode): 3 attempts, then the error surfaces
    assert nothing_left(s3)


def test_part_refused_by_s3_on_every_attempt_aborts_the_upload(store: S3Store, s3: Any) -> None:
    attempts: Counter[int] = Counter()

    def fail_part_one(request: Any, **_: Any) -> AWSResponse | None:
        attempts[part_number(request)] += 1
        return s3_error(request, 500, "InternalError") if part_number(request) == 1 else None

    s3.meta.events.register_first("before-send.s3.UploadPart", fail_part_one)

    with pytest.raises(UploadError, match="InternalError"):
        upload(store, os.urandom(12 * MIB))

    assert attempts[1] == 3
    assert nothing_left(s3)


def test_part_refused_without_retry_aborts_the_upload(store: S3Store, s3: Any) -> None:
    attempts: Counter[int] = Counter()

    def deny(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        attempts[int(params["query_string"]["partNumber"])] += 1
        error = {"Error": {"Code": "AccessDenied", "Message": "injected"}, "ResponseMetadata": {"HTTPStatusCode": 403}}
        return AWSResponse(KEY, 403, {}, _Raw(b"")), error

    s3.meta.events.register("before-call.s3.UploadPart", deny)

    with pytest.raises(UploadError, match="AccessDenied"):
        upload(store, os.urandom(7 * MIB))

    assert attempts[1] == 1  # a 403 is not retried
    assert nothing_left(s3)


def test_part_dropped_once_is_retried_and_the_upload_completes(store: S3Store, s3: Any) -> None:
    attempts: Counter[int] = Counter()
    data = os.urandom(12 * MIB)

    def drop_first_attempt_of_part_two(request: Any, **_: Any) -> None:
        attempts[part_number(request)] += 1
        if part_number(request) == 2 and attempts[2] == 1:
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.UploadPart", drop_first_attempt_of_part_two)

    result = upload(store, data)

    assert attempts == Counter({1: 1, 2: 2, 3: 1})
    assert result.parts == 3
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == data
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads") is None


def test_production_client_retries_a_dropped_part_five_times(s3: Any) -> None:
    client = s3_client()  # backstop.bootstrap: standard retries, 5 attempts
    store = S3Store(client, bucket=BUCKET, prefix="backups", part_size=5 * MIB, concurrency=2)
    attempts: Counter[int] = Counter()

    def drop_first_four(request: Any, **_: Any) -> None:
        attempts[part_number(request)] += 1
        if attempts[part_number(request)] < 5:
            raise ConnectionClosedError(endpoint_url=request.url)

    client.meta.events.register_first("before-send.s3.UploadPart", drop_first_four)

    result = upload(store, b"small but precious")

    assert attempts == Counter({1: 5})
    assert result.size == len(b"small but precious")


def test_complete_refused_by_s3_aborts_the_upload(store: S3Store, s3: Any) -> None:
    def refuse(params: dict[str, Any], **_: Any) -> None:
        raise ClientError({"Error": {"Code": "InvalidPart", "Message": "injected"}}, "CompleteMultipartUpload")

    s3.meta.events.register("before-call.s3.CompleteMultipartUpload", refuse)

    with pytest.raises(UploadError, match="did not complete"):
        upload(store, os.urandom(6 * MIB))

    assert nothing_left(s3)


def test_failure_in_the_writer_aborts_the_upload(store: S3Store, s3: Any) -> None:
    with pytest.raises(RuntimeError, match="source died"), store.upload(KEY, {}) as multipart:
        multipart.write(os.urandom(6 * MIB))
        raise RuntimeError("source died")

    assert nothing_left(s3)


def test_backup_whose_part_upload_fails_commits_nothing(
    make_config: Any, store: S3Store, s3: Any, assets: Path, work_dir: Path
) -> None:
    def drop_part_two(request: Any, **_: Any) -> None:
        if part_number(request) == 2:
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.UploadPart", drop_part_two)

    with pytest.raises(UploadError):
        backup_assets(make_config, store, assets)

    assert store.newest_backup_id("assets") is None
    assert not store.manifest_exists("assets-20261121T020000Z")
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads") is None
    assert s3.list_object_versions(Bucket=BUCKET, Prefix="backups/assets/").get("Versions") is None
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="backups/_locks/").get("KeyCount") == 0
    assert store.failure_count("assets") == 1
    assert list(work_dir.iterdir()) == []


def test_backup_survives_a_transient_part_failure_and_verifies(
    make_config: Any, store: S3Store, s3: Any, assets: Path
) -> None:
    dropped: list[int] = []

    def drop_part_three_once(request: Any, **_: Any) -> None:
        if part_number(request) == 3 and not dropped:
            dropped.append(3)
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.UploadPart", drop_part_three_once)

    config, outcome = backup_assets(make_config, store, assets)
    report = VerifyService(config, store).verify("assets", "latest")

    assert dropped == [3]
    assert outcome.created
    assert report.manifest.backup_id == "assets-20261121T020000Z"
    assert store.failure_count("assets") == 0


# -- read-back verification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "lie", "reason"),
    [
        ("ContentLength", lambda n: n - 1, "bytes for"),
        ("ChecksumSHA256", lambda _: base64.b64encode(hashlib.sha256(b"x").digest()).decode(), "SHA-256"),
        ("ChecksumSHA256", lambda c: f"{c}-7", "SHA-256"),
        ("ChecksumSHA256", None, "none"),
    ],
)
def test_head_reporting_other_size_or_checksum_is_not_trusted(
    store: S3Store, s3: Any, field: str, lie: Any, reason: str
) -> None:
    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        if lie is None:
            parsed.pop(field, None)
        elif field in parsed:
            parsed[field] = lie(parsed[field])

    s3.meta.events.register("after-call.s3.HeadObject", rewrite)

    with pytest.raises(ChecksumMismatchError, match=reason) as caught:
        upload(store, os.urandom(6 * MIB))

    assert "not trusted" in str(caught.value)


def test_upload_rejected_by_the_read_back_is_left_to_its_tiers_lifecycle_rule(store: S3Store, s3: Any) -> None:
    # given S3 reporting a size other than what was streamed
    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ContentLength"] = parsed["ContentLength"] + 1

    s3.meta.events.register("after-call.s3.HeadObject", rewrite)

    # when the upload completes, it is not trusted
    with pytest.raises(ChecksumMismatchError):
        upload(store, os.urandom(6 * MIB))

    # then nothing was deleted (no role may delete a version): the version stays, tagged with its tier,
    # so the tier's lifecycle rule expires it; with no manifest it never counts as a backup
    (version,) = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    tags = s3.get_object_tagging(Bucket=BUCKET, Key=KEY, VersionId=version["VersionId"])["TagSet"]
    assert {"Key": "backstop:tier", "Value": "daily"} in tags
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_an_upload_never_completes_over_an_existing_key(store: S3Store, s3: Any) -> None:
    # given a key that already holds a backup
    first = upload(store, b"the genuine backup")

    # when another upload of the same key completes
    with pytest.raises(UploadError, match="already exists in the vault"):
        upload(store, b"anything else")

    # then the first version is still the only one, and the second upload was aborted
    (version,) = s3.list_object_versions(Bucket=BUCKET)["Versions"]
    assert version["VersionId"] == first.version_id
    assert not s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_backup_whose_read_back_mismatches_commits_no_manifest(
    make_config: Any, store: S3Store, s3: Any, assets: Path
) -> None:
    def rewrite(parsed: dict[str, Any], **_: Any) -> None:
        if "ChecksumSHA256" in parsed:
            parsed["ChecksumSHA256"] = base64.b64encode(hashlib.sha256(b"x").digest()).decode()

    s3.meta.events.register("after-call.s3.HeadObject", rewrite)

    with pytest.raises(ChecksumMismatchError):
        backup_assets(make_config, store, assets)

    assert store.newest_backup_id("assets") is None
    assert store.failure_count("assets") == 1
