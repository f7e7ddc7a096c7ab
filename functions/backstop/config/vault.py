"""The vault-wide settings of backstop.yaml: alerts, storage (Object Lock, replica, writers), freshness,
restore, sweep and runner.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    ByteSize,
    Field,
    field_validator,
    model_validator,
)

from backstop.config.fields import (
    _BUCKET,
    LARGEST_BUDGET,
    Duration,
    Flag,
    WholeNumber,
    _LocatedError,
    _Model,
    _size,
    _whole_number,
)

_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[A-Za-z0-9+=,.@_/-]+")


class Alerts(_Model):
    """Who hears about failed and stale backups: each address receives the alerts topic by email."""

    emails: tuple[str, ...] = ()

    @field_validator("emails")
    @classmethod
    def _addresses(cls, emails: tuple[str, ...]) -> tuple[str, ...]:
        for index, email in enumerate(emails):
            if not _EMAIL.fullmatch(email):
                raise _LocatedError((index,), f"{email!r} is not an email address")
        return emails


class ObjectLock(_Model):
    """S3 Object Lock on the vault: every artifact and manifest is locked, when written, until its own
    tier expires (a yearly backup for its years, a daily one for its days), in ``mode``.

    governance: only an administrator allowed s3:BypassGovernanceRetention (``storage.administrators``)
    can delete early; compliance: nobody can, not even the account's root user, until the retention
    ends. ``days``, when set, is also the bucket's default retention for versions written by anyone
    else. Once on, Object Lock stays on.
    """

    mode: Literal["governance", "compliance"] = "governance"
    days: WholeNumber | None = Field(default=None, ge=1, le=36500)


_REGION = re.compile(r"[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}")
_ACCOUNT = re.compile(r"\d{12}")


class Replica(_Model):
    """A second copy of every committed backup, out of reach of what can befall the vault's region or account.

    S3 replicates the vault's history (artifacts, manifests, their tags and lock retention; never a
    delete) into ``bucket`` in ``region``, a bucket of its own stack (``BackstopReplica``) with its own
    KMS key, the same lifecycle rules and Object Lock always on. ``account``: the replica's account when
    it is not the vault's; the replica then trusts ``vault_account`` to replicate into it and to check
    it, and nothing else of that account. Read it with ``backstop --bucket <bucket> list / verify / restore``.
    """

    bucket: str
    region: str
    account: str | None = None
    vault_account: str | None = None
    object_lock: ObjectLock = ObjectLock()
    """Every replicated version is locked at least this long (``days``; by default as long as lifecycle keeps
    the shortest-lived backup version), or as long as the vault locked it, whichever S3 replicates."""
    allowed_lag: Duration = timedelta(hours=6)
    """How far the replica may trail the vault before freshness alerts (the database's ``stale_after`` plus this)."""
    administrators: tuple[str, ...] = ()
    """Roles of the replica's account that may change its configuration or delete and re-tag what it holds."""

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, value: str) -> str:
        return _bucket(value)

    @field_validator("region")
    @classmethod
    def _region_name(cls, value: str) -> str:
        if not _REGION.fullmatch(value):
            raise ValueError(f"{value!r} is not an AWS region name (like eu-west-1)")
        return value

    @field_validator("account", "vault_account")
    @classmethod
    def _account_id(cls, value: str | None) -> str | None:
        if value is not None and not _ACCOUNT.fullmatch(value):
            raise ValueError(f"{value!r} is not a 12-digit AWS account id (quote it in YAML)")
        return value

    @field_validator("allowed_lag")
    @classmethod
    def _lag(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=15) <= value <= timedelta(days=7):
            raise ValueError("allow the replica 15m to 7d of lag")
        return value

    @field_validator("administrators")
    @classmethod
    def _role_arns(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        return _role_arns(roles)

    @model_validator(mode="after")
    def _accounts(self) -> Replica:
        if (self.account is None) != (self.vault_account is None):
            raise ValueError(
                "set account and vault_account together (a replica in another account must know which "
                "account's vault replicates into it), or neither (the replica is in the vault's account)"
            )
        return self

    @property
    def cross_account(self) -> bool:
        return self.account is not None and self.account != self.vault_account


def _bucket(value: str) -> str:
    if not _BUCKET.fullmatch(value) or ".." in value or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", value):
        raise ValueError(f"{value!r} is not a valid S3 bucket name")
    return value


def _role_arns(roles: tuple[str, ...]) -> tuple[str, ...]:
    for index, arn in enumerate(roles):
        if not _ROLE_ARN.fullmatch(arn):
            raise _LocatedError((index,), f"{arn!r} is not an IAM role ARN")
    return roles


class Storage(_Model):
    """How the vault bucket keeps what the retention tiers do not decide."""

    cold_after_days: WholeNumber = Field(default=30, ge=1, le=3650)
    yearly_storage_class: Literal["GLACIER_IR", "GLACIER", "DEEP_ARCHIVE"] = "GLACIER_IR"
    noncurrent_days: WholeNumber = Field(default=30, ge=1, le=3650)
    access_log_days: WholeNumber = Field(default=365, ge=1, le=3650)
    object_lock: ObjectLock | None = None
    writers: tuple[str, ...] = ()
    administrators: tuple[str, ...] = ()
    """Roles (ARNs, ``*`` allowed in the name) that may change the vault's configuration, delete or
    re-tag backups and bypass governance locks; besides them only CloudFormation's deploy role may."""

    replica: Replica | None = None

    @field_validator("writers", "administrators")
    @classmethod
    def _role_arns(cls, roles: tuple[str, ...]) -> tuple[str, ...]:
        return _role_arns(roles)


class FreshnessCheck(_Model):
    """How often the deployed freshness check compares each database's newest backup with its ``stale_after``."""

    every: Duration = timedelta(hours=1)

    @field_validator("every")
    @classmethod
    def _whole_minutes(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= value <= timedelta(hours=12) or value.total_seconds() % 60:
            raise ValueError("run the freshness check every 5m to 12h, in whole minutes")
        return value


APPROVER_PATTERN = re.compile(r"arn:aws[a-z-]*:(iam::\d{12}:user|sts::\d{12}:assumed-role)/[\w+=,.@/*-]{1,400}")


class KeepPreRestore(_Model):
    """How many of a target's pre-restore copies a restore keeps: what it replaced, beside the target.

    ``<target>.pre-restore-<time>`` (files, directories) and ``<dbname>_pre_restore_<time>``
    (server databases). After a restore succeeds, the copies older than its own that completed
    restores left are pruned down to the newest ``count`` no older than ``days`` (no age limit when
    ``days`` is null); the newest completed copy is always kept, and never the copy of a restore
    that is still running or failed (docs/runbooks/restore.md).
    """

    count: WholeNumber = Field(default=3, ge=1, le=1000)
    days: WholeNumber | None = Field(default=14, ge=1, le=3650)


class RestoreSettings(_Model):
    """How the restore workflow asks for approval, and what restores keep of what they replace."""

    approval_timeout: Duration = timedelta(hours=24)
    distinct_approver: Flag = False
    """Refuse an approval by the identity that requested the restore (four eyes)."""
    approvers: tuple[str, ...] = ()
    """Principal ARNs (``*`` matches any run of characters) that may approve; empty: anyone who may invoke the
    approval function. ``arn:aws:iam::111122223333:user/alice``, ``arn:aws:sts::111122223333:assumed-role/DBA/*``."""
    safety_snapshot_days: WholeNumber = Field(default=30, ge=1, le=3650)
    """How long lifecycle keeps a restore's safety snapshot of its target."""
    keep_pre_restore: KeepPreRestore = KeepPreRestore()

    @field_validator("approvers")
    @classmethod
    def _principal_arns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not APPROVER_PATTERN.fullmatch(pattern):
                raise ValueError(
                    f"{pattern[:100]!r} is not a principal ARN: use arn:aws:iam::ACCOUNT:user/NAME or "
                    "arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION (* for any part)"
                )
        return value

    @field_validator("approval_timeout")
    @classmethod
    def _reasonable_wait(cls, value: timedelta) -> timedelta:
        if not timedelta(minutes=5) <= value <= timedelta(days=7) or value.total_seconds() % 60:
            raise ValueError("wait 5m to 7d for an approval, in whole minutes")
        return value


class Sweep(_Model):
    """The scheduled verification sweep: re-reads stored backups within a byte budget per run."""

    every: Duration = timedelta(days=1)
    budget: Annotated[ByteSize, BeforeValidator(_size)] = ByteSize(10 * 1024**3)
    """Bytes re-read per run, 1B to 1PiB (``10GiB``, ``500MB`` or a number of bytes)."""
    repair: Flag = False
    """`backstop sweep` repairs a backup whose key it finds overwritten (and alerts what it did). Off by
    default, and for the command only: repair deletes object versions, which the vault's bucket policy
    refuses to every role but ``storage.administrators``, so it runs with an administrator's credentials.
    The deployed sweep function alerts and repairs nothing (synth warns when this is on)."""

    @field_validator("every")
    @classmethod
    def _cadence(cls, value: timedelta) -> timedelta:
        if not timedelta(hours=1) <= value <= timedelta(days=30) or value.total_seconds() % 60:
            raise ValueError("sweep every 1h to 30d, in whole minutes")
        return value

    @field_validator("budget")
    @classmethod
    def _budget(cls, value: ByteSize) -> ByteSize:
        if not 1 <= value <= LARGEST_BUDGET:
            raise ValueError("a sweep budget is 1B to 1PiB: with none, every sweep fails")
        return value


class Runner(_Model):
    """The deployed functions' container image and logs."""

    architecture: Literal["x86_64", "arm64"] = "x86_64"
    log_retention_days: Annotated[
        Literal[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 3653],
        BeforeValidator(_whole_number),
    ] = 90
