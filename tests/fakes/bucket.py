"""What the S3-backed fakes share with ``S3Store``: a clock for the times S3 would record, and read-only replicas."""

from __future__ import annotations

from datetime import UTC, datetime

from backstop.errors import ReadOnlyReplicaError
from backstop.ports import Clock
from tests.fakes.faults import Faulty

BUCKET = "backstop-test"


def s3_now() -> datetime:
    return datetime.now(UTC)


class FakeBucket(Faulty):
    """The part of a vault bucket every S3-backed fake has.

    ``clock`` gives the time S3 would stamp on a write (``LastModified``), cut to whole seconds as S3
    does; ``replica_of`` makes the fake a replica of that vault, refusing every write with
    ReadOnlyReplicaError like ``S3Store(replica_of=...)``. The fakes of one bucket's ports combine by
    inheritance (``class FakeVault(FakeRunLocks, FakeFailureLog, FakeVerificationRecords)``): every
    constructor takes keywords only and hands them on.
    """

    def __init__(self, *, bucket: str = BUCKET, replica_of: str | None = None, clock: Clock = s3_now) -> None:
        self.bucket = bucket
        self.replica_of = replica_of
        self._clock = clock

    def _s3_time(self) -> datetime:
        return self._clock().astimezone(UTC).replace(microsecond=0)

    def _refuse_on_replica(self, what: str) -> None:
        if self.replica_of is not None:
            raise ReadOnlyReplicaError(
                f"s3://{self.bucket} is the replica of s3://{self.replica_of}, which Backstop only reads: {what} "
                "refused."
            )
