"""The vault's second copy: a replica bucket in another region and/or account, and what S3 needs to fill it.

``ReplicaStack`` (``<vault stack>Replica``, deployed first by ``cdk deploy --all``) holds the replica
bucket with its own KMS key, the vault's lifecycle rules and Object Lock always on. The vault stack
adds the replication rule and its role (``BackupVault.replicate_to``). The two stacks never reference
each other's resources: they meet on names fixed by the configuration (the replica's bucket, the
replica key's alias, the IAM paths below), so either side can be deployed into its own account.

What the replica refuses, whoever asks (its bucket policy):

- any object write, delete, re-tag or re-lock but S3 replication by the vault's replication role,
  and that role only adds versions: a replicated delete is refused, and none is configured;
- reads by the vault's account except its replica readers (the freshness check: manifests only);
- configuration changes (lifecycle, versioning, lock, policy) except by ``storage.replica.administrators``
  and the replica account's CloudFormation deploy role.

A compromised vault account can therefore add versions to the replica and change tags S3 replicates
(``held-`` tiers last longer; a tier tag the vault's own policy refuses to change cannot be replicated
as changed), never delete or shorten the lock of a version the replica holds.
"""

from __future__ import annotations

from aws_cdk import Aws, CfnOutput, Environment, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

from backstop.config import Config, Replica
from infra.backup_vault import (
    BUCKET_CONFIGURATION,
    CDK_DEPLOY_ROLES,
    GUARDED_ACTIONS,
    REPLICATES,
    REPLICATION_OWNER,
    access_log_bucket,
    check_replica_lock,
    replica_key_alias,
    replica_lock_days,
    replica_reader_path,
    replication_role_path,
    vault_bucket,
    vault_lifecycle_rules,
)


def replica_stack_name(vault_stack: str) -> str:
    return f"{vault_stack}Replica"


class ReplicaStack(Stack):
    """The replica vault of ``config.storage.replica``: bucket, key, access logs, lifecycle, lock and policy."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config, vault_stack: str) -> None:
        replica = config.storage.replica
        if replica is None:
            raise ValueError("ReplicaStack needs storage.replica in the configuration")
        check_replica_lock(config)
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=replica.account, region=replica.region),
            description=f"Backstop: the replica of s3://{config.bucket}, its key, lifecycle and lock",
        )
        self.node.set_context("@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy", True)
        vault_account = replica.vault_account or Aws.ACCOUNT_ID
        self._vault_root = iam.AccountPrincipal(vault_account)
        self._replication_role = f"arn:{Aws.PARTITION}:iam::{vault_account}:role{replication_role_path(vault_stack)}*"
        self._readers = f"arn:{Aws.PARTITION}:iam::{vault_account}:role{replica_reader_path(vault_stack)}*"

        self.key = kms.Key(
            self,
            "Key",
            alias=replica_key_alias(vault_stack),
            description=f"Backstop: encrypts the replica of s3://{config.bucket} in s3://{replica.bucket}",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
        )
        self._key_policy(replica)
        self.access_logs = access_log_bucket(self, "AccessLogs", days=config.storage.access_log_days)
        self.bucket = vault_bucket(
            self,
            name=replica.bucket,
            key=self.key,
            access_logs=self.access_logs,
            log_prefix="replica/",
            lifecycle_rules=vault_lifecycle_rules(config),
            lock=(replica.object_lock.mode, replica_lock_days(config)),
        )
        self._bucket_policy(config.prefix, replica)

        CfnOutput(self, "BucketName", value=self.bucket.bucket_name, description="The replica (backstop --bucket)")
        CfnOutput(self, "KeyArn", value=self.key.key_arn, description="The KMS key that encrypts the replica")

    def _key_policy(self, replica: Replica) -> None:
        through_s3 = {"kms:ViaService": f"s3.{replica.region}.amazonaws.com"}
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TheVaultReplicatesIntoTheReplica",
                principals=[self._vault_root],
                actions=["kms:Encrypt", "kms:GenerateDataKey"],
                resources=["*"],
                conditions={"StringEquals": through_s3, "ArnLike": {"aws:PrincipalArn": self._replication_role}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TheVaultChecksTheReplica",
                principals=[self._vault_root],
                actions=["kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": through_s3, "ArnLike": {"aws:PrincipalArn": self._readers}},
            )
        )

    def _bucket_policy(self, prefix: str, replica: Replica) -> None:
        objects = self.bucket.arn_for_objects(f"{prefix}/*")
        administrators = list(replica.administrators) or [
            f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/backstop-no-administrator"
        ]
        deploy = f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:{CDK_DEPLOY_ROLES}"
        for statement in (
            iam.PolicyStatement(
                sid="TheVaultReplicatesHere",
                principals=[self._vault_root],
                actions=[*REPLICATES, REPLICATION_OWNER],
                resources=[objects],
                conditions={"ArnLike": {"aws:PrincipalArn": self._replication_role}},
            ),
            iam.PolicyStatement(
                sid="TheVaultChecksReplication",
                principals=[self._vault_root],
                actions=["s3:GetBucketVersioning", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"ArnLike": {"aws:PrincipalArn": self._replication_role}},
            ),
            iam.PolicyStatement(
                sid="TheVaultReadsReplicaManifests",
                principals=[self._vault_root],
                actions=["s3:GetObject"],
                resources=[self.bucket.arn_for_objects(f"{prefix}/*.manifest.json")],
                conditions={"ArnLike": {"aws:PrincipalArn": self._readers}},
            ),
            iam.PolicyStatement(
                sid="TheVaultListsTheReplica",
                principals=[self._vault_root],
                actions=["s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={
                    "ArnLike": {"aws:PrincipalArn": self._readers},
                    "StringLikeIfExists": {"s3:prefix": [f"{prefix}/*"]},
                },
            ),
            iam.PolicyStatement(
                sid="OnlyTheVaultReplicatesHere",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(REPLICATES),
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"ArnNotLike": {"aws:PrincipalArn": self._replication_role}},
            ),
            iam.PolicyStatement(
                sid="NoDeleteIsReplicated",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["s3:ReplicateDelete"],
                resources=[self.bucket.arn_for_objects("*")],
            ),
            iam.PolicyStatement(
                sid="TheReplicaIsNeverRewritten",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(GUARDED_ACTIONS),
                resources=[self.bucket.arn_for_objects("*")],
                conditions={"ArnNotLike": {"aws:PrincipalArn": administrators}},
            ),
            iam.PolicyStatement(
                sid="OnlyAdministratorsConfigureTheReplica",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(BUCKET_CONFIGURATION),
                resources=[self.bucket.bucket_arn],
                conditions={"ArnNotLike": {"aws:PrincipalArn": [*replica.administrators, deploy]}},
            ),
        ):
            self.bucket.add_to_resource_policy(statement)
