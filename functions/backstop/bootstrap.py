"""The composition root: builds the real adapters from the configuration, lazily, never at import time.

boto3 reads the standard environment (``AWS_ENDPOINT_URL``, ``AWS_REGION``, credentials), so the
same code talks to AWS and to the embedded emulator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import boto3
from botocore.config import Config as BotoConfig

from backstop.adapters.parameter_store import ParameterCatalog
from backstop.adapters.s3_store import MIB, S3Store
from backstop.adapters.sns import SnsNotifier
from backstop.config import Config, Upload
from backstop.config.environment import AlertSettings, CatalogSettings, FunctionSettings
from backstop.config.workflow_environment import ApprovalSettings, WorkflowSettings
from backstop.errors import ConfigError
from backstop.ports import NoNotifier, Notifier

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_ssm import SSMClient

# Standard retry mode retries throttling, 5xx and dropped connections with back-off before any
# error reaches Backstop; an upload that still fails is aborted.
_BOTO = BotoConfig(
    retries={"mode": "standard", "max_attempts": 5},
    connect_timeout=10,
    read_timeout=120,
    max_pool_connections=32,
)


def s3_client(region: str | None = None) -> S3Client:
    return boto3.client("s3", config=_BOTO, region_name=region)


def ssm_client() -> SSMClient:
    return boto3.client("ssm", config=_BOTO)


def build_catalog(settings: CatalogSettings | WorkflowSettings) -> ParameterCatalog:
    """The database catalog the function was deployed with (``BACKSTOP_CATALOG``, checked against its digest)."""
    return ParameterCatalog(ssm_client(), settings.catalog, settings.catalog_digest)


def build_replica_store(config: Config | FunctionSettings, client: S3Client | None = None) -> S3Store:
    """The store of the vault's replica (``storage.replica``, or a function's ``BACKSTOP_REPLICA_*``), read-only
    by policy, in the replica's region."""
    replica = config.storage.replica if isinstance(config, Config) else config.replica
    if replica is None:
        raise ConfigError(f"s3://{config.bucket} has no replica configured (storage.replica in backstop.yaml).")
    return S3Store(
        client or s3_client(replica.region),
        bucket=replica.bucket,
        prefix=config.prefix,
        replica_of=config.bucket,
    )


def build_store(config: Config | FunctionSettings, client: S3Client | None = None) -> S3Store:
    """The S3 store of ``config`` (or of a function's environment, with the default upload tuning)."""
    upload = config.upload if isinstance(config, Config) else Upload()
    return S3Store(
        client or s3_client(),
        bucket=config.bucket,
        prefix=config.prefix,
        kms_key_id=config.kms_key_id,
        part_size=upload.part_size_mb * MIB,
        concurrency=upload.concurrency,
    )


def build_notifier(config: Config | FunctionSettings | ApprovalSettings) -> Notifier:
    """SNS when ``alerts_topic_arn`` is configured, else nothing (the caller reports failures itself)."""
    if config.alerts_topic_arn is None:
        return NoNotifier()
    return SnsNotifier(boto3.client("sns", config=_BOTO), config.alerts_topic_arn)


def build_alert_notifier(settings: AlertSettings) -> Notifier:
    """SNS that raises when a publish fails, for the function whose only job is to deliver alerts."""
    return SnsNotifier(boto3.client("sns", config=_BOTO), settings.alerts_topic_arn, strict=True)
