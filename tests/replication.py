"""S3 replication, emulated inside moto: moto keeps a bucket's replication configuration but never replicates."""

from __future__ import annotations

from typing import Any

import boto3
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.s3.models import FakeKey, s3_backends

REPLICA = "backstop-test-replica"
REPLICA_REGION = "eu-west-1"


def create_replica_bucket(name: str = REPLICA, region: str = REPLICA_REGION) -> Any:
    """The versioned replica bucket in another region (inside ``mock_aws``); a client of that region."""
    client = boto3.client("s3", region_name=region)
    client.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    return client


def replicate(source: str, replica: str, *, account_id: str = DEFAULT_ACCOUNT_ID) -> int:
    """Copy into ``replica`` every object version of ``source`` it does not hold yet, as S3 replication does.

    Each copy keeps the key, the VersionId, the bytes, the last-modified time, the ETag and checksum, the
    content metadata, the storage class, the tags and the Object Lock retention and legal hold; the replica
    bucket's own default encryption applies. Versions are copied oldest first, so the source's current
    version is the replica's too. Delete markers are never replicated, and nothing is ever removed from the
    replica: a version deleted from ``source`` stays there. Running it again copies nothing. Returns how many
    versions were copied.
    """
    backend = s3_backends[account_id]["aws"]
    source_bucket, replica_bucket = backend.get_bucket(source), backend.get_bucket(replica)
    if source == replica or not (source_bucket.is_versioned and replica_bucket.is_versioned):
        raise ValueError(f"replicating {source} into {replica} needs two buckets, both versioned")
    copied = 0
    for name, versions in list(source_bucket.keys.iterlists()):
        held = {str(version.version_id) for version in replica_bucket.keys.getlist(name, [])}
        for version in versions:
            if not isinstance(version, FakeKey) or str(version.version_id) in held:
                continue
            _copy_version(backend, version, replica)
            copied += 1
    return copied


def _copy_version(backend: Any, version: FakeKey, replica: str) -> None:
    copy: FakeKey = backend.put_object(
        replica,
        version.name,
        version.value,
        storage=version.storage_class,
        etag=version.etag.strip('"'),
        lock_mode=version.lock_mode,
        lock_legal_status=version.lock_legal_status,
        lock_until=version.lock_until,
        checksum_value=version.checksum_value,
        disable_notification=True,
    )
    copy._version_id = version.version_id
    copy.last_modified = version.last_modified
    copy.checksum_algorithm = version.checksum_algorithm
    copy.checksum_type = version.checksum_type
    copy.checksum_parts = version.checksum_parts
    copy.set_metadata(dict(version.metadata))
    tags = backend.tagger.get_tag_dict_for_resource(version.arn)
    if tags:
        backend.tagger.tag_resource(copy.arn, backend.tagger.convert_dict_to_tags_input(tags))
