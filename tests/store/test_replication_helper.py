"""tests/replication.py does what S3 replication does, so the replica tests read what AWS would hold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.conftest import BUCKET
from tests.replication import REPLICA, create_replica_bucket, replicate

KEY = "backups/orders/2026/11/21/orders-20261121T020000Z.sqlite.zst"


@pytest.fixture
def replica_s3(s3: Any) -> Any:
    """A client in the replica's region, with the versioned replica bucket there."""
    return create_replica_bucket()


def versions(client: Any, bucket: str) -> list[tuple[str, str]]:
    """Key and version id of every version (no delete markers) in ``bucket``."""
    listing = client.list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"]) for v in listing.get("Versions", []))


def tags(client: Any, bucket: str, version_id: str) -> dict[str, str]:
    tag_set = client.get_object_tagging(Bucket=bucket, Key=KEY, VersionId=version_id)["TagSet"]
    return {tag["Key"]: tag["Value"] for tag in tag_set}


def test_replication_copies_every_version_with_its_id_bytes_tags_and_metadata(s3: Any, replica_s3: Any) -> None:
    # given two versions of a key, tagged and typed, and a delete marker on another key
    first = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"first", Tagging="backstop%3Atier=daily")["VersionId"]
    second = s3.put_object(
        Bucket=BUCKET, Key=KEY, Body=b"second", ContentType="application/zstd", Tagging="backstop%3Atier=weekly"
    )["VersionId"]
    s3.put_object(Bucket=BUCKET, Key="backups/other", Body=b"other")
    s3.delete_object(Bucket=BUCKET, Key="backups/other")

    # when the vault is replicated
    copied = replicate(BUCKET, REPLICA)

    # then the replica holds the same versions, the newest current, with the same bytes, tags and type,
    # and the key deleted in the vault still serves its object there
    assert copied == 3
    assert versions(replica_s3, REPLICA) == versions(s3, BUCKET)
    assert "DeleteMarkers" not in replica_s3.list_object_versions(Bucket=REPLICA)
    current = replica_s3.get_object(Bucket=REPLICA, Key=KEY)
    assert (current["VersionId"], current["Body"].read(), current["ContentType"]) == (
        second,
        b"second",
        "application/zstd",
    )
    assert replica_s3.get_object(Bucket=REPLICA, Key=KEY, VersionId=first)["Body"].read() == b"first"
    assert tags(replica_s3, REPLICA, first) == tags(s3, BUCKET, first) == {"backstop:tier": "daily"}
    assert tags(replica_s3, REPLICA, second) == {"backstop:tier": "weekly"}
    assert replica_s3.get_object(Bucket=REPLICA, Key="backups/other")["Body"].read() == b"other"


def test_a_version_deleted_from_the_vault_stays_in_the_replica_and_nothing_is_copied_twice(
    s3: Any, replica_s3: Any
) -> None:
    # given a replicated version, deleted from the vault afterwards
    version = s3.put_object(Bucket=BUCKET, Key=KEY, Body=b"backup")["VersionId"]
    replicate(BUCKET, REPLICA)
    s3.delete_object(Bucket=BUCKET, Key=KEY, VersionId=version)

    # when replication runs again
    copied = replicate(BUCKET, REPLICA)

    # then nothing was copied and the replica still serves the version
    assert copied == 0
    assert versions(replica_s3, REPLICA) == [(KEY, version)]
    assert replica_s3.get_object(Bucket=REPLICA, Key=KEY, VersionId=version)["Body"].read() == b"backup"


def test_replication_keeps_the_object_lock_retention(s3: Any, replica_s3: Any) -> None:
    # given a vault with Object Lock and a version locked in governance mode
    s3.create_bucket(Bucket="locked-vault", ObjectLockEnabledForBucket=True)
    until = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    version = s3.put_object(
        Bucket="locked-vault", Key=KEY, Body=b"locked", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until
    )["VersionId"]

    # when it is replicated
    replicate("locked-vault", REPLICA)

    # then the replica's version is locked the same way, until the same time
    head = replica_s3.head_object(Bucket=REPLICA, Key=KEY, VersionId=version)
    assert (head["ObjectLockMode"], head["ObjectLockRetainUntilDate"]) == ("GOVERNANCE", until)
