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
- **Only Backstop writes backups.** That window is also how long a backup survives being overwritten
  or deleted, however young it is: a stray ``aws s3 cp`` onto a yearly backup's key would leave the
  real backup noncurrent, gone 30 days later. Rather than keep every noncurrent version as long as
  the longest retention (which would keep every expired daily backup for years), the bucket policy
  denies writing, deleting, re-tagging or re-locking anything under ``<prefix>/`` to every principal
  except the backup functions' roles (IAM path ``/backstop/<stack>/``) and the roles listed in
  ``storage.writers`` (operators running ``backstop backup``). Each backup role may only touch its
  own database's keys (``grant_backup``).
- **Object Lock agrees with lifecycle.** With ``storage.object_lock`` every new version is locked for
  its ``days``; the check below refuses a lock longer than the shortest time lifecycle keeps a
  version (the shortest daily retention plus ``noncurrent_days``), because lifecycle could then never
  delete it when the configuration says, and in compliance mode nobody could.
- **Rule budget.** S3 accepts at most 1000 lifecycle rules per bucket. The vault uses four per
  database plus three shared rules (housekeeping, ``_locks/``, ``_failures/``), so one vault holds at
  most 249 databases; ``LifecycleRuleLimitError`` says so at synth time instead of at deploy time.
  Rules cannot be shared between databases: a filter takes a single prefix and AND-s its tags.

Construct IDs (``Key``, ``Bucket``, ``AccessLogs``) are stable API: renaming one makes CloudFormation
replace the resource, and for the bucket or its key that means losing every backup.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Aws, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from backstop.config import Config, Replica
from backstop.config.targets import safety_database
from backstop.errors import ConfigError
from backstop.retention import BACKUP_TAG_KEYS, TIER_TAG, TIERS, expiry_days, held

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

STORAGE_CLASSES = {
    "GLACIER_IR": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
    "GLACIER": s3.StorageClass.GLACIER,
    "DEEP_ARCHIVE": s3.StorageClass.DEEP_ARCHIVE,
}
"""``storage.yearly_storage_class`` values and the S3 classes they name."""

GUARDED_ACTIONS = (
    "s3:PutObject",
    "s3:PutObjectTagging",
    "s3:PutObjectVersionTagging",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:DeleteObject",
    "s3:DeleteObjectVersion",
    "s3:PutObjectRetention",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
)
"""What only the vault's writers may do under ``<prefix>/``: write, delete, re-tier (tags) or re-lock."""

HISTORY_SUFFIXES = (
    *(f".{fmt}{comp}" for fmt in ("sqlite", "pgdump", "sql", "tar") for comp in (".zst", ".gz", "")),
    ".manifest.json",
)
"""How every artifact and manifest key ends (``backstop.adapters.s3_store.ARTIFACT_EXTENSION``, ``MANIFEST_SUFFIX``):
the history the bucket policy keeps write-once. Sidecars, run locks and failure records are not history."""

REWRITES = (
    "s3:DeleteObject",  # a delete marker hides a backup from listings and from manual recovery
    "s3:DeleteObjectVersion",
    "s3:DeleteObjectTagging",
    "s3:DeleteObjectVersionTagging",
    "s3:PutObjectLegalHold",
    "s3:BypassGovernanceRetention",
)
"""What no role but an administrator may do to a written backup or manifest."""

RETAGS = ("s3:PutObjectTagging", "s3:PutObjectVersionTagging")
"""Re-tiering: refused on any object that already carries a tier tag (tags are written with the object)."""

BUCKET_CONFIGURATION = (
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:PutBucketAcl",
    "s3:PutBucketLogging",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
)
"""The vault's configuration: only administrators and CloudFormation's deploy role change it."""

CDK_DEPLOY_ROLES = "role/cdk-*-cfn-exec-role-*"
"""The CloudFormation execution roles of ``cdk bootstrap``, which apply the vault's configuration on deploy."""


class LifecycleRuleLimitError(ConfigError):
    """The configuration needs more lifecycle rules than one S3 bucket accepts."""


class ObjectLockConflictError(ConfigError):
    """Object Lock would keep versions locked past the time lifecycle is configured to delete them."""


def cold_transition_days(expire_after: int, cold_after: int, storage_class: s3.StorageClass) -> int | None:
    """Age at which to move an object expiring at ``expire_after`` to ``storage_class``; None when it does not pay."""
    if cold_after >= expire_after:
        return None
    if expire_after - cold_after < MINIMUM_STORAGE_DAYS[storage_class.value]:
        return None
    return cold_after


def safety_snapshot_prefixes(config: Config) -> list[str]:
    """The pseudo-databases under which restores keep their safety snapshots, one per declared target."""
    return [safety_database(db.name, target) for db in config.databases for target in db.restore_targets]


def lifecycle_rule_count(config: Config) -> int:
    """Number of lifecycle rules the vault needs for ``config``."""
    return len(TIERS) * len(config.databases) + len(safety_snapshot_prefixes(config)) + SHARED_RULES


def shortest_version_life(config: Config) -> tuple[int, str, str]:
    """Fewest days lifecycle keeps any backup version (expiry + noncurrent window), whose they are, and the remedy."""
    lives = [
        (expiry_days(db.retention)["daily"], f"{db.name}'s daily backups", "daily backups") for db in config.databases
    ]
    if safety_snapshot_prefixes(config):
        lives.append(
            (config.restore.safety_snapshot_days, "restores' safety snapshots", "restore.safety_snapshot_days")
        )
    days, subject, remedy = min(lives)
    return days + config.storage.noncurrent_days, subject, remedy


def check_object_lock(config: Config) -> None:
    """ObjectLockConflictError when ``storage.object_lock`` outlives what lifecycle keeps."""
    lock = config.storage.object_lock
    if lock is None or lock.days is None:
        return  # each object's own lock ends when its tier expires (backstop.retention.lock_for)
    life, subject, remedy = shortest_version_life(config)
    if lock.days > life:
        raise ObjectLockConflictError(
            f"storage.object_lock.days ({lock.days}) is longer than the {life} days after which lifecycle deletes "
            f"{subject} ({life - config.storage.noncurrent_days} days of retention + "
            f"storage.noncurrent_days {config.storage.noncurrent_days}): lock for at most {life} days or keep "
            f"{remedy} longer."
        )


def vault_lifecycle_rules(config: Config) -> list[s3.LifecycleRule]:
    """The lifecycle rules of the vault of ``config``, and of its replica: the same tiers, kept as long."""
    prefix = config.prefix
    rules = [
        s3.LifecycleRule(
            id="backstop-housekeeping",
            abort_incomplete_multipart_upload_after=Duration.days(1),
            noncurrent_version_expiration=Duration.days(config.storage.noncurrent_days),
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
            expiration=Duration.days(max(db.retention.daily for db in config.databases)),
        ),
    ]
    # A restore's safety snapshot is not part of any tier: it is kept a fixed time, whatever its tag.
    for name in safety_snapshot_prefixes(config):
        rules.append(
            s3.LifecycleRule(
                id=name,
                prefix=f"{prefix}/{name}/",
                expiration=Duration.days(config.restore.safety_snapshot_days),
            )
        )
    for db in config.databases:
        for tier, days in expiry_days(db.retention).items():
            rules.append(
                s3.LifecycleRule(
                    id=f"{db.name}-{tier}",
                    prefix=f"{prefix}/{db.name}/",
                    tag_filters={TIER_TAG: tier},
                    expiration=Duration.days(days),
                    transitions=_transitions(config, tier, days),
                )
            )
    return rules


def _transitions(config: Config, tier: str, expire_after: int) -> list[s3.Transition] | None:
    cold_classes = {
        "monthly": s3.StorageClass.GLACIER_INSTANT_RETRIEVAL,
        "yearly": STORAGE_CLASSES[config.storage.yearly_storage_class],
    }
    storage_class = cold_classes.get(tier)
    if storage_class is None:
        return None
    after = cold_transition_days(expire_after, config.storage.cold_after_days, storage_class)
    if after is None:
        return None
    return [s3.Transition(storage_class=storage_class, transition_after=Duration.days(after))]


def replica_lock_days(config: Config) -> int:
    """How long the replica locks every version it receives: ``storage.replica.object_lock.days``, by default as
    long as lifecycle keeps the shortest-lived backup version (a version locked by the vault keeps that lock)."""
    replica = config.storage.replica
    if replica is None:
        raise ValueError("no storage.replica")
    return replica.object_lock.days or shortest_version_life(config)[0]


def check_replica_lock(config: Config) -> None:
    """ObjectLockConflictError when the replica's lock outlives what its lifecycle keeps."""
    life, subject, remedy = shortest_version_life(config)
    days = replica_lock_days(config)
    if days > life:
        raise ObjectLockConflictError(
            f"storage.replica.object_lock.days ({days}) is longer than the {life} days after which lifecycle "
            f"deletes {subject} in the replica: lock for at most {life} days or keep {remedy} longer."
        )


def vault_bucket(
    scope: Construct,
    *,
    name: str,
    key: kms.IKey,
    access_logs: s3.IBucket,
    log_prefix: str,
    lifecycle_rules: list[s3.LifecycleRule],
    lock: tuple[str, int | None] | None,
) -> s3.Bucket:
    """The ``Bucket`` of a vault or of its replica: versioned, SSE-KMS with ``key``, TLS only, logged, kept; with
    Object Lock when ``lock`` is ``(mode, default days or None)``."""
    mode, days = lock if lock is not None else ("governance", None)
    retention = s3.ObjectLockRetention.compliance if mode == "compliance" else s3.ObjectLockRetention.governance
    return s3.Bucket(
        scope,
        "Bucket",
        bucket_name=name,
        versioned=True,
        encryption=s3.BucketEncryption.KMS,
        encryption_key=key,
        bucket_key_enabled=True,
        # A backup encrypted with a customer-provided key is unreadable without that key: refuse it.
        blocked_encryption_types=[s3.BlockedEncryptionType.SSE_C],
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        server_access_logs_bucket=access_logs,
        server_access_logs_prefix=log_prefix,
        transition_default_minimum_object_size=s3.TransitionDefaultMinimumObjectSize.ALL_STORAGE_CLASSES_128_K,
        lifecycle_rules=lifecycle_rules,
        object_lock_enabled=True if lock is not None else None,
        object_lock_default_retention=None if days is None else retention(Duration.days(days)),
    )


def access_log_bucket(scope: Construct, construct_id: str, *, days: int) -> s3.Bucket:
    """The bucket a vault's server access logs go to, kept ``days``."""
    # S3 delivers server access logs only to a bucket encrypted with S3-managed keys, not SSE-KMS.
    bucket = s3.Bucket(
        scope,
        construct_id,
        encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
        enforce_ssl=True,
        minimum_tls_version=1.2,
        removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        lifecycle_rules=[
            s3.LifecycleRule(
                id="expire-access-logs",
                expiration=Duration.days(days),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            )
        ],
    )
    resource = bucket.node.default_child
    if resource is None:  # an L2 Bucket always has its CfnBucket; this keeps mypy honest
        raise RuntimeError("the access log bucket has no CloudFormation resource")
    Validations.of(resource).acknowledge(
        Acknowledgment(
            id="AwsSolutions-S1",
            reason="This is the server access log bucket of the vault: logging it into itself would loop, "
            "and a further log bucket would only move the same question one level up.",
        )
    )
    return bucket


REPLICATION_RULE = "backstop-replica"
"""The id of the vault's one replication rule (a dimension of S3's replication metrics)."""

REPLICATES = ("s3:ReplicateObject", "s3:ReplicateTags")
"""What S3 does in the replica on the vault's behalf: add a version, and copy its tags."""

REPLICATION_OWNER = "s3:ObjectOwnerOverrideToBucketOwner"
"""Across accounts, replicas become the replica account's objects."""


def replication_role_path(vault_stack: str) -> str:
    """The IAM path of the role S3 replicates with, in the vault's account."""
    return f"/backstop-replica/{vault_stack}/replication/"


def replica_reader_path(vault_stack: str) -> str:
    """The IAM path of the vault account's roles that may read the replica's manifests (the freshness check)."""
    return f"/backstop-replica/{vault_stack}/readers/"


def replica_key_alias(vault_stack: str) -> str:
    """The alias of the replica's key: the vault side names the key by it, never by a cross-stack reference."""
    return f"alias/backstop/{vault_stack}-replica"


def _nag_key(replica: Replica) -> str:
    """``replica_key_arns`` as cdk-nag writes it in a finding's id."""
    return f"arn:<AWS::Partition>:kms:{replica.region}:{replica.account or '<AWS::AccountId>'}:key/*"


def replica_key_arns(replica: Replica) -> str:
    """The replica's keys, as an identity policy resource (narrowed to the alias by ``kms:ResourceAliases``)."""
    return f"arn:{Aws.PARTITION}:kms:{replica.region}:{replica.account or Aws.ACCOUNT_ID}:key/*"


def writer_role_path(scope: Construct) -> str:
    """The IAM path of the roles the vault lets write backups: ``/backstop/<stack name>/``."""
    return f"/backstop/{Stack.of(scope).stack_name}/"


class BackupVault(Construct):
    """The bucket every backup, manifest, run lock and failure record lives in, with its key and access logs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        """Create the vault of ``config`` (``bucket``, ``prefix``, the databases' retention and ``storage``)."""
        super().__init__(scope, construct_id)
        # Log delivery by bucket policy, not by the LogDeliveryWrite ACL that BucketOwnerEnforced forbids.
        # Set here, before any child exists, so the vault does not depend on a flag in cdk.json.
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        needed = lifecycle_rule_count(config)
        if needed > MAX_LIFECYCLE_RULES:
            most = (MAX_LIFECYCLE_RULES - SHARED_RULES) // len(TIERS)
            raise LifecycleRuleLimitError(
                f"The configuration lists {len(config.databases)} databases, which needs {needed} S3 lifecycle "
                f"rules (the limit is {MAX_LIFECYCLE_RULES}): split it into vaults of at most {most} databases."
            )
        check_object_lock(config)
        storage = config.storage
        self._config = config
        self._prefix = config.prefix

        self.key = kms.Key(
            self,
            "Key",
            description=f"Backstop: encrypts the backups in s3://{config.bucket}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )

        self.access_logs = access_log_bucket(self, "AccessLogs", days=storage.access_log_days)

        lock = storage.object_lock
        self.bucket = vault_bucket(
            self,
            name=config.bucket,
            key=self.key,
            access_logs=self.access_logs,
            log_prefix="vault/",
            lifecycle_rules=vault_lifecycle_rules(config),
            lock=None if lock is None else (lock.mode, lock.days),
        )
        self.writer_role_path = writer_role_path(self)
        self.guard_role_path = f"{self.writer_role_path}guard/"
        """The IAM path of the keep-last-good guard's role: the one role that may move a tier tag, and
        only between ``<tier>`` and ``held-<tier>`` (``grant_guard``)."""
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyBackstopWritesBackups",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(GUARDED_ACTIONS),
                resources=[self.bucket.arn_for_objects(f"{self._prefix}/*")],
                conditions={
                    "ArnNotLike": {
                        "aws:PrincipalArn": [self._writer_role_pattern(), *storage.writers, *storage.administrators]
                    }
                },
            )
        )
        self._protect_history(storage.administrators)
        self.replication_role: iam.Role | None = None
        if storage.replica is not None:
            self.replication_role = self._replicate_to(storage.replica)

    def _replicate_to(self, replica: Replica) -> iam.Role:
        """S3 replication of the vault's history into ``replica`` (``infra.replica.ReplicaStack``): every new
        version under ``<prefix>/``, with its tags and lock; never a delete marker."""
        stack = Stack.of(self).stack_name
        replica_account = replica.account or Aws.ACCOUNT_ID
        replica_bucket = f"arn:{Aws.PARTITION}:s3:::{replica.bucket}"
        alias = replica_key_alias(stack)
        role = iam.Role(
            self,
            "ReplicationRole",
            description=f"Backstop: S3 replicates s3://{self._config.bucket} into s3://{replica.bucket} with it",
            assumed_by=iam.ServicePrincipal("s3.amazonaws.com"),
            path=replication_role_path(stack),
        )
        history = self.bucket.arn_for_objects(f"{self._prefix}/*")
        for statement in (
            iam.PolicyStatement(
                sid="ReadTheReplicationRule",
                actions=["s3:GetReplicationConfiguration", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
            ),
            iam.PolicyStatement(
                sid="ReadVersionsToReplicate",
                actions=[
                    "s3:GetObjectVersionForReplication",
                    "s3:GetObjectVersionAcl",
                    "s3:GetObjectVersionTagging",
                    "s3:GetObjectRetention",
                    "s3:GetObjectLegalHold",
                ],
                resources=[history],
            ),
            iam.PolicyStatement(
                sid="ReplicateIntoTheReplica",
                actions=[*REPLICATES, *([REPLICATION_OWNER] if replica.cross_account else [])],
                resources=[f"{replica_bucket}/{self._prefix}/*"],
            ),
            iam.PolicyStatement(
                sid="CheckTheReplica",
                actions=["s3:GetBucketVersioning"],
                resources=[replica_bucket],
            ),
            iam.PolicyStatement(
                sid="DecryptWhatIsReplicated",
                actions=["kms:Decrypt"],
                resources=[self.key.key_arn],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"},
                    "StringLike": {
                        "kms:EncryptionContext:aws:s3:arn": [self.bucket.bucket_arn, f"{self.bucket.bucket_arn}/*"]
                    },
                },
            ),
            iam.PolicyStatement(
                sid="EncryptReplicasWithTheReplicaKey",
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=[replica_key_arns(replica)],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{replica.region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": [alias]},
                },
            ),
        ):
            role.add_to_principal_policy(statement)
        self.acknowledge_key_patterns(
            role,
            [f"{self._prefix}/*"],
            "S3 replicates every version under the vault's prefix, whose keys are named by the time of each "
            "backup; the role only reads them for replication.",
        )
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is not None:
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:s3:::{replica.bucket}/{self._prefix}/*]",
                    reason="Replicas keep the vault's keys, named by the time of each backup; the replica's own "
                    "policy lets this role add versions and tags there, nothing else.",
                )
            )
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{_nag_key(replica)}]",
                    reason="The replica's key is in another stack (and maybe account) and is named by its alias: "
                    "kms:ResourceAliases narrows the grant to that one key.",
                )
            )

        cfn = self.bucket.node.default_child
        if not isinstance(cfn, s3.CfnBucket):  # always true; this keeps mypy honest
            raise TypeError("the vault has no CfnBucket")
        destination = s3.CfnBucket.ReplicationDestinationProperty(
            bucket=replica_bucket,
            account=replica.account if replica.cross_account else None,
            access_control_translation=(
                s3.CfnBucket.AccessControlTranslationProperty(owner="Destination") if replica.cross_account else None
            ),
            encryption_configuration=s3.CfnBucket.EncryptionConfigurationProperty(
                replica_kms_key_id=f"arn:{Aws.PARTITION}:kms:{replica.region}:{replica_account}:{alias}"
            ),
            metrics=s3.CfnBucket.MetricsProperty(status="Enabled"),
        )
        cfn.replication_configuration = s3.CfnBucket.ReplicationConfigurationProperty(
            role=role.role_arn,
            rules=[
                s3.CfnBucket.ReplicationRuleProperty(
                    id=REPLICATION_RULE,
                    status="Enabled",
                    priority=0,
                    filter=s3.CfnBucket.ReplicationRuleFilterProperty(prefix=f"{self._prefix}/"),
                    delete_marker_replication=s3.CfnBucket.DeleteMarkerReplicationProperty(status="Disabled"),
                    source_selection_criteria=s3.CfnBucket.SourceSelectionCriteriaProperty(
                        sse_kms_encrypted_objects=s3.CfnBucket.SseKmsEncryptedObjectsProperty(status="Enabled")
                    ),
                    destination=destination,
                )
            ],
        )
        return role

    def _protect_history(self, administrators: Sequence[str]) -> None:
        """Backups and manifests are written once and then only read, whoever asks; the configuration that
        keeps them (lifecycle, versioning, lock, policy, replication) is changed only by administrators.

        Lifecycle is not subject to the bucket policy: it still expires what retention says.
        """
        history = [self.bucket.arn_for_objects(f"{self._prefix}/*{suffix}") for suffix in HISTORY_SUFFIXES]
        admins = {"ArnNotLike": {"aws:PrincipalArn": list(administrators) or [self._nobody()]}}
        deploy = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:{CDK_DEPLOY_ROLES}"
        for statement in (
            iam.PolicyStatement(
                # CreateMultipartUpload and UploadPart carry no condition header: only the requests that
                # create the object (PutObject, CompleteMultipartUpload) must say If-None-Match.
                sid="BackupsAreWrittenOnce",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:PutObject"],
                resources=history,
                conditions={"Null": {"s3:if-none-match": "true"}, "Bool": {"s3:ObjectCreationOperation": "true"}},
            ),
            iam.PolicyStatement(
                sid="BackupsAreNeverRewritten",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(REWRITES),
                resources=history,
                conditions=admins,
            ),
            iam.PolicyStatement(
                # The guard's role is let through here and held to holding and releasing below.
                sid="TiersAreNeverRetagged",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(RETAGS),
                resources=history,
                conditions={
                    "Null": {f"s3:ExistingObjectTag/{TIER_TAG}": "false"},
                    "ArnNotLike": {
                        "aws:PrincipalArn": [*admins["ArnNotLike"]["aws:PrincipalArn"], self._guard_role_pattern()]
                    },
                },
            ),
            *(
                iam.PolicyStatement(
                    # A backup tagged <tier> or held-<tier> stays one of the two: whatever the guard's own
                    # policy says, it can keep a backup longer, never make lifecycle take it sooner.
                    sid=f"TheGuardOnlyHolds{tier.capitalize()}",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=list(RETAGS),
                    resources=history,
                    conditions={
                        "ArnLike": {"aws:PrincipalArn": self._guard_role_pattern()},
                        "StringEquals": {f"s3:ExistingObjectTag/{TIER_TAG}": [tier, held(tier)]},
                        "StringNotEquals": {f"s3:RequestObjectTag/{TIER_TAG}": [tier, held(tier)]},
                    },
                )
                for tier in TIERS
            ),
            iam.PolicyStatement(
                sid="OnlyAdministratorsConfigureTheVault",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(BUCKET_CONFIGURATION),
                resources=[self.bucket.bucket_arn],
                conditions={"ArnNotLike": {"aws:PrincipalArn": [*administrators, deploy]}},
            ),
        ):
            self.bucket.add_to_resource_policy(statement)

    @staticmethod
    def _nobody() -> str:
        """A principal pattern no caller matches: without administrators, the denials hold for everyone."""
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/backstop-no-administrator"

    @property
    def lock_actions(self) -> list[str]:
        """What a writer needs to lock what it writes: the retention is set with the object."""
        return ["s3:PutObjectRetention"] if self._config.storage.object_lock is not None else []

    def _writer_role_pattern(self) -> str:
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{self.writer_role_path}*"

    def _guard_role_pattern(self) -> str:
        return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role{self.guard_role_path}*"

    # -- grants ---------------------------------------------------------------------------------

    def grant_backup(self, role: iam.IRole, database: str) -> None:
        """Let ``role`` back up ``database`` and nothing else: its own keys, run lock and failure records.

        The role must live under ``writer_role_path``, or the bucket policy refuses its writes.
        """
        own = f"{self._prefix}/{database}/*"
        lock = f"{self._prefix}/_locks/{database}.backup.json"
        for statement in (
            iam.PolicyStatement(
                sid="ReadAndWriteOwnBackups",
                actions=[
                    "s3:GetObject",
                    "s3:GetObjectVersion",  # HEAD of the exact version just uploaded
                    "s3:PutObject",
                    "s3:PutObjectTagging",  # the retention tier is written as a tag with the object
                    "s3:AbortMultipartUpload",
                    *self.lock_actions,
                ],
                resources=[self.bucket.arn_for_objects(own)],
            ),
            iam.PolicyStatement(
                sid="TakeAndReleaseOwnRunLock",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                resources=[self.bucket.arn_for_objects(lock)],
            ),
            iam.PolicyStatement(
                sid="RecordOwnFailures",
                # Read too: a retry of the same run counts its attempts there and alerts only once.
                actions=["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"],
                resources=[self.bucket.arn_for_objects(f"{self._prefix}/_failures/{database}/*")],
            ),
            self._list_statement([database]),
            self._key_statement(["kms:GenerateDataKey", "kms:Decrypt"]),
        ):
            role.add_to_principal_policy(statement)
        self.acknowledge_key_patterns(
            role,
            [own, f"{self._prefix}/_failures/{database}/*"],
            f"Backup keys are named by the time of each backup, so they are unknown when deploying; the grant "
            f"stops at {database}'s own prefix, and the bucket policy refuses writers outside the Backstop roles.",
        )

    def grant_verify(self, role: iam.IRole, databases: Sequence[str], kind: str) -> None:
        """Let ``role`` read the given databases' backups and write only their ``kind`` sidecars (drill, sweep).

        Read-only on every backup and manifest; the one write is the record beside a backup, and the
        role must live under ``writer_role_path`` for the bucket policy to let it through.
        """
        reads = [f"{self._prefix}/{db}/*" for db in databases]
        sidecars = [f"{self._prefix}/{db}/*.{kind}.json" for db in databases]
        for statement in (
            iam.PolicyStatement(
                sid="ReadBackups",
                actions=["s3:GetObject", "s3:GetObjectVersion"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in reads],
            ),
            iam.PolicyStatement(
                sid=f"Write{kind.capitalize()}Records",
                actions=["s3:PutObject", "s3:PutObjectTagging"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in sidecars]
                + (
                    [self.bucket.arn_for_objects(f"{self._prefix}/_drills/{db}.last-success.json") for db in databases]
                    if kind == "drill"
                    else []
                ),
            ),
            self._list_statement(databases),
            self._key_statement(["kms:GenerateDataKey", "kms:Decrypt"]),
        ):
            role.add_to_principal_policy(statement)
        self.acknowledge_key_patterns(
            role,
            [*reads, *sidecars],
            f"Backups and their {kind} records are named by the time of each backup, so they are unknown when "
            f"deploying; reads stop at the listed databases' prefixes and the only write is the {kind} record.",
        )

    def grant_guard(self, role: iam.IRole, databases: Sequence[str]) -> None:
        """Let ``role`` (under ``guard_role_path``) move the given databases' backups between ``<tier>`` and
        ``held-<tier>``: read manifests and sweep records, read tags, and write a tag set whose tier is
        the same tier, held or not, as the one the version has. Nothing else: no write, no delete.
        """
        own = [f"{self._prefix}/{db}/*" for db in databases]
        reads = [f"{self._prefix}/{db}/*{suffix}" for db in databases for suffix in (".manifest.json", ".sweep.json")]
        statements = [
            iam.PolicyStatement(
                sid="ReadManifestsAndSweepRecords",
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in reads],
            ),
            iam.PolicyStatement(
                sid="ReadTiers",
                actions=["s3:GetObjectVersionTagging"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in own],
            ),
            *(
                iam.PolicyStatement(
                    sid=f"HoldAndRelease{tier.capitalize()}",
                    actions=["s3:PutObjectVersionTagging"],
                    resources=[self.bucket.arn_for_objects(pattern) for pattern in own],
                    conditions={
                        "StringEquals": {
                            f"s3:ExistingObjectTag/{TIER_TAG}": [tier, held(tier)],
                            f"s3:RequestObjectTag/{TIER_TAG}": [tier, held(tier)],
                        },
                        "ForAllValues:StringEquals": {"s3:RequestObjectTagKeys": list(BACKUP_TAG_KEYS)},
                    },
                )
                for tier in TIERS
            ),
            self._list_statement(databases),
            self._key_statement(["kms:Decrypt"]),
        ]
        for statement in statements:
            role.add_to_principal_policy(statement)
        self.acknowledge_key_patterns(
            role,
            [*own, *reads],
            "Backups are named by the time of each backup, so they are unknown when deploying; the guard reads "
            "manifests and sweep records, and its only write is a tier tag moved between <tier> and held-<tier>, "
            "which the bucket policy enforces too.",
        )

    def grant_read_manifests(self, role: iam.IRole, databases: Sequence[str], drilled: Sequence[str] = ()) -> None:
        """Let ``role`` list the given databases' keys and read their manifests (and the ``drilled`` ones'
        last successful drill), nothing else."""
        patterns = [f"{self._prefix}/{db}/*.manifest.json" for db in databases]
        successes = [f"{self._prefix}/_drills/{db}.last-success.json" for db in drilled]
        for statement in (
            iam.PolicyStatement(
                sid="ReadManifests",
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(pattern) for pattern in [*patterns, *successes]],
            ),
            self._list_statement(databases),
            self._key_statement(["kms:Decrypt"]),
        ):
            role.add_to_principal_policy(statement)
        self.acknowledge_key_patterns(
            role,
            patterns,
            "Manifests are named by the time of each backup, so they are unknown when deploying; the grant "
            "is read-only and stops at the manifests of the listed databases.",
        )

    def grant_read_replica_manifests(self, role: iam.IRole, replica: Replica, databases: Sequence[str]) -> None:
        """Let ``role`` (under ``replica_reader_path``) list the replica's keys of ``databases`` and read their
        manifests; the replica's bucket and key policies allow the same, and nothing more, from this account."""
        bucket = f"arn:{Aws.PARTITION}:s3:::{replica.bucket}"
        manifests = [f"{self._prefix}/{db}/*.manifest.json" for db in databases]
        for statement in (
            iam.PolicyStatement(
                sid="ReadReplicaManifests",
                actions=["s3:GetObject"],
                resources=[f"{bucket}/{pattern}" for pattern in manifests],
            ),
            iam.PolicyStatement(
                sid="ListReplicaPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket],
                conditions={
                    "StringLikeIfExists": {
                        "s3:prefix": [
                            p for db in databases for p in (f"{self._prefix}/{db}/", f"{self._prefix}/{db}/*")
                        ]
                    }
                },
            ),
            iam.PolicyStatement(
                sid="UseReplicaKeyThroughS3",
                actions=["kms:Decrypt"],
                resources=[replica_key_arns(replica)],
                conditions={
                    "StringEquals": {"kms:ViaService": f"s3.{replica.region}.amazonaws.com"},
                    "ForAnyValue:StringEquals": {"kms:ResourceAliases": [replica_key_alias(Stack.of(self).stack_name)]},
                },
            ),
        ):
            role.add_to_principal_policy(statement)
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is None:
            raise RuntimeError(f"{role.node.path} has no default policy to acknowledge")
        for resource in [*(f"arn:<AWS::Partition>:s3:::{replica.bucket}/{p}" for p in manifests), _nag_key(replica)]:
            Validations.of(policy).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::{resource}]",
                    reason="The replica's manifests are named by the time of each backup, and its key is in "
                    "another stack, named by its alias (kms:ResourceAliases): the grant is read-only and "
                    "stops at the manifests of the listed databases.",
                )
            )

    def acknowledge_key_patterns(self, role: iam.IRole, patterns: Sequence[str], reason: str) -> None:
        """Acknowledge cdk-nag's wildcard finding for exactly these object-key patterns, on the role's policy."""
        policy = role.node.try_find_child("DefaultPolicy")
        if policy is None:
            raise RuntimeError(f"{role.node.path} has no default policy to acknowledge")
        bucket = self.bucket.node.default_child
        if not isinstance(bucket, s3.CfnBucket):  # always true; this keeps mypy honest
            raise TypeError("the vault has no CfnBucket")
        logical_id = Stack.of(self).resolve(Stack.of(self).get_logical_id(bucket))
        # On the role: when its statements outgrow one policy, IAM's overflow policies are its children too.
        for pattern in patterns:
            Validations.of(role).acknowledge(
                Acknowledgment(id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/{pattern}]", reason=reason)
            )

    def _list_statement(self, databases: Sequence[str]) -> iam.PolicyStatement:
        # IfExists: S3 answers a GET or HEAD of a missing key with 404 rather than 403 only to a caller
        # allowed to list the bucket, and that implicit check carries no s3:prefix; the backup path
        # relies on 404 ("no manifest yet"). A real listing always carries a prefix, checked here.
        prefixes = [p for db in databases for p in (f"{self._prefix}/{db}/", f"{self._prefix}/{db}/*")]
        return iam.PolicyStatement(
            sid="ListOwnPrefixes",
            actions=["s3:ListBucket"],
            resources=[self.bucket.bucket_arn],
            conditions={"StringLikeIfExists": {"s3:prefix": prefixes}},
        )

    def _key_statement(self, actions: list[str]) -> iam.PolicyStatement:
        return iam.PolicyStatement(
            sid="UseVaultKeyThroughS3",
            actions=actions,
            resources=[self.key.key_arn],
            conditions={
                "StringEquals": {"kms:ViaService": f"s3.{Aws.REGION}.amazonaws.com"},
                # With an S3 Bucket Key the encryption context is the bucket's ARN, else the object's.
                "StringLike": {
                    "kms:EncryptionContext:aws:s3:arn": [self.bucket.bucket_arn, f"{self.bucket.bucket_arn}/*"]
                },
            },
        )
