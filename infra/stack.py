"""BackstopStack: composes the Backstop constructs from one validated backstop.yaml."""

from __future__ import annotations

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from backstop.config import Config
from infra.backup_vault import BackupVault


class BackstopStack(Stack):
    """Everything `cdk deploy` ships; this first piece holds the backup vault."""

    def __init__(self, scope: Construct, construct_id: str, *, config: Config) -> None:
        super().__init__(
            scope,
            construct_id,
            description="Backstop: scheduled, verified database backups and approved restores",
        )
        self.vault = BackupVault(self, "Vault", config=config)

        CfnOutput(
            self,
            "BucketName",
            value=self.vault.bucket.bucket_name,
            description="The backup vault bucket (backstop.yaml `bucket`)",
        )
        CfnOutput(
            self,
            "KeyArn",
            value=self.vault.key.key_arn,
            description="The KMS key that encrypts the vault; backup and restore roles need it",
        )
