"""The backup vault: one versioned, KMS-encrypted S3 bucket whose lifecycle rules enforce each database's retention.

Retention is expressed through S3 lifecycle rules, one per (database, tier): the rule matches the
database's key prefix ``<prefix>/<database>/`` AND the object tag ``backstop:tier`` that the runtime
writes on every artifact and manifest (``S3Store.tags_for``), and expires it after the tier's age.

Decisions worth knowing before changing this file:

- **A tier lives at least as long as every tier below it.** A backup carries only its highest tier
  (the first backup of a month is ``monthly``, not also ``daily``), so a tier kept for less time than
  a lower one would punch holes in the lower chain: with ``weekly: 0`` and a 1-day expiry every
  Monday backup would vanish while Sunday's and Tuesday's stay. A tier configured to 0 ("keep none
  of this tier") therefore expires with the tier below it (a weekly backup then lives as long as a
  daily one). ``backstop.retention.expiry_days`` computes this running maximum over daily, weekly, monthly, yearly.
- **Cold storage only when it pays.** Monthly and yearly backups move to a colder class after
  ``cold_after_days`` (30 by default), but only when they then stay there at least the class's
  minimum storage duration (90 days for the Glacier classes, 180 for Deep Archive); otherwise the
  early-deletion charge would exceed the saving and the transition is skipped. Objects under 128 KiB
  (manifests) never transition, so listing and reading manifests stays cheap and instant. The default
  class is Glacier Instant Retrieval for both tiers because the restore path reads objects directly;
  Glacier Flexible Retrieval and Deep Archive (an option for yearly backups) need a RestoreObject of
  hours first, which nothing in the runtime does yet.
- **Expiring a version is not deleting the data.** The bucket is versioned: a lifecycle expiration
  adds a delete marker and the bytes stay as a noncurrent version for ``noncurrent_days`` (30 by
  default), the window in which an accidental or malicious deletion can be undone; then the orphaned
  delete marker goes too. A backup therefore occupies storage for its tier's age plus that window.
- **Rule budget.** S3 accepts at most 1000 lifecycle rules per bucket. The vault uses four per
  database plus three shared rules (housekeeping, ``_locks/``, ``_failures/``), so one vault holds at
  most 249 databases; ``LifecycleRuleLimitError`` says so at synth time instead of at deploy time.
  Rules cannot be shared between databases: a filter takes a single prefix and AND-s its tags.

Construct IDs (``Key``, ``Bucket``, ``AccessLogs``) are stable API: renaming one makes CloudFormation
replace the resource, and for the bucket or its key that means losing every backup.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Duration, RemovalPolicy, Validations
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from backstop.config import Config
from backstop.retention import TIERS, expiry_days

TIER_TAG = "backstop:tier"
"""The object tag the runtime writes with the backup's tier (see ``S3Store.tags_for``)."""

MAX_LIFECYCLE_RULES = 1000
"""S3's limit on lifecycle rules in one bucket configuration."""

SHARED_RULES = 3
"""Rules that do not depend on the number of databases: housekeeping, run locks, failure records."""

MINIMUM_STORAGE_DAYS = {
    s3.StorageClass.GLACIER_INSTANT_RETRIEVAL.value: 90,
    s3.StorageClass.GLACIER.value: 90,
    s3.StorageClass.DEEP_ARCHIVE.value: 180,
}
"""Minimum billed storage duration of each cold class: deleting earlier is charged as if kept this long."""


class LifecycleRuleLimitError(ValueError):
    """The configuration needs more lifecycle rules than one S3 bucket accepts."""


def cold_transition_days(expire_after: int, cold_after: int, storage_class: s3.StorageClass) -> int | None:
    """Age at which to move an object expiring at ``expire_after`` to ``storage_class``; None when it does not pay."""
    if cold_after >= expire_after:
        return None
    if expire_after - cold_after < MINIMUM_STORAGE_DAYS[storage_class.value]:
        return None
    return cold_after


def lifecycle_rule_count(config: Config) -> int:
    """Number of lifecycle rules the vault needs for ``config``."""
    return len(TIERS) * len(config.databases) + SHARED_RULES


class BackupVault(Construct):
    """The bucket every backup, manifest, run lock and failure record lives in, with its key and access logs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: Config,
        cold_after_days: int = 30,
        yearly_storage_class: s3.StorageClass = s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
        noncurrent_days: int = 30,
        access_log_days: int = 365,
    ) -> None:
        """Create the vault of ``config``.

        ``cold_after_days``: age at which monthly and yearly backups move to cold storage.
        ``yearly_storage_class``: Glacier Instant Retrieval (default), Glacier or Deep Archive.
        ``noncurrent_days``: how long an expired, overwritten or deleted version stays recoverable.
        ``access_log_days``: how long the S3 server access logs of the vault are kept.
        """
        super().__init__(scope, construct_id)
        # Log delivery by bucket policy, not by the LogDeliveryWrite ACL that BucketOwnerEnforced forbids.
        # Set here, before any child exists, so the vault does not depend on a flag in cdk.json.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        if min(cold_after_days, noncurrent_days, access_log_days) < 1:
            raise ValueError("cold_after_days, noncurrent_days and access_log_days must be at least 1.")
        if yearly_storage_class.value not in MINIMUM_STORAGE_DAYS:
            raise ValueError(f"yearly_storage_class must be one of {', '.join(MINIMUM_STORAGE_DAYS)}.")
        needed = lifecycle_rule_count(config)
        if needed > MAX_LIFECYCLE_RULES:
            most = (MAX_LIFECYCLE_RULES - SHARED_RULES) // len(TIERS)
            raise LifecycleRuleLimitError(
                f"The configuration lists {len(config.databases)} databases, which needs {needed} S3 lifecycle "
                f"rules (the limit is {MAX_LIFECYCLE_RULES}): split it into vaults of at most {most} databases."
            )
        self._config = config
        self._cold_after_days = cold_after_days
        self._cold_classes = {"monthly": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL, "yearly": yearly_storage_class}
        self._noncurrent_days = noncurrent_days

        self.key = kms.Key(
            self,
            "Key",
            description=f"Backstop: encrypts the backups in s3://{config.bucket}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # S3 delivers server access logs only to a bucket encrypted with S3-managed keys, not SSE-KMS.
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=Duration.days(access_log_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                )
            ],
        )
        access_logs_resource = self.access_logs.node.default_child
        if access_logs_resource is None:  # an L2 Bucket always has its CfnBucket; this keeps mypy honest
            raise RuntimeError("the access log bucket has no CloudFormation resource")
        Validations.of(access_logs_resource).acknowledge(
            Acknowledgment(
                id="AwsSolutions-S1",
                reason="This is the server access log bucket of the vault: logging it into itself would loop, "
                "and a further log bucket would only move the same question one level up.",
            )
        )

        self.bucket = s3.Bucket(
            self,
            "Bucket",
            bucket_name=config.bucket,
            versioned=True,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            # A backup encrypted with a customer-provided key is unreadable without that key: refuse it.
            blocked_encryption_types=[s3.BlockedEncryptionType.SSE_C],
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            removal_policy=RemovalPolicy.RETAIN,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="vault/",
            transition_default_minimum_object_size=s3.TransitionDefaultMinimumObjectSize.ALL_STORAGE_CLASSES_128_K,
            lifecycle_rules=self._lifecycle_rules(),
        )

    def _lifecycle_rules(self) -> list[s3.LifecycleRule]:
        prefix = self._config.prefix
        rules = [
            s3.LifecycleRule(
                id="backstop-housekeeping",
                abort_incomplete_multipart_upload_after=Duration.days(1),
                noncurrent_version_expiration=Duration.days(self._noncurrent_days),
                expired_object_delete_marker=True,
            ),
            # Every run writes and then deletes its lock: old lock versions hold nothing worth recovering.
            s3.LifecycleRule(
                id="backstop-locks",
                prefix=f"{prefix}/_locks/",
                noncurrent_version_expiration=Duration.days(1),
                expired_object_delete_marker=True,
            ),
            # Failure records follow the daily tier (S3Store.record_failure); one rule serves every
            # database, so it keeps them as long as the longest daily retention.
            s3.LifecycleRule(
                id="backstop-failures",
                prefix=f"{prefix}/_failures/",
                expiration=Duration.days(max(db.retention.daily for db in self._config.databases)),
            ),
        ]
        for db in self._config.databases:
            for tier, days in expiry_days(db.retention).items():
                rules.append(
                    s3.LifecycleRule(
                        id=f"{db.name}-{tier}",
                        prefix=f"{prefix}/{db.name}/",
                        tag_filters={TIER_TAG: tier},
                        expiration=Duration.days(days),
                        transitions=self._transitions(tier, days),
                    )
                )
        return rules

    def _transitions(self, tier: str, expire_after: int) -> list[s3.Transition] | None:
        storage_class = self._cold_classes.get(tier)
        if storage_class is None:
            return None
        after = cold_transition_days(expire_after, self._cold_after_days, storage_class)
        if after is None:
            return None
        return [s3.Transition(storage_class=storage_class, transition_after=Duration.days(after))]
