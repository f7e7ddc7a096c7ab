"""The functions' environment, validated once per container (values are names and ARNs, never secrets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from backstop.config import Config, Database, Upload
from backstop.errors import ConfigError


class _Environment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        fields = {name: environ.get(f"BACKSTOP_{name.upper()}") for name in cls.model_fields}
        try:
            return cls.model_validate({k: v for k, v in fields.items() if v})
        except ValidationError as exc:
            problems = "; ".join(f"BACKSTOP_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"The function's environment is invalid: {problems}.") from None


class FunctionSettings(_Environment):
    """``BACKSTOP_*`` environment variables of a deployed function (backup, freshness)."""

    bucket: str = Field(min_length=3)
    prefix: str = "backups"
    kms_key_id: str | None = None
    alerts_topic_arn: str | None = None

    def config_for(self, database: Database) -> Config:
        """A one-database Config, as the services expect it."""
        return Config(
            bucket=self.bucket,
            prefix=self.prefix,
            kms_key_id=self.kms_key_id,
            alerts_topic_arn=self.alerts_topic_arn,
            upload=Upload(),
            databases=(database,),
        )


class AlertSettings(_Environment):
    """The environment of the failure-alert function: only the topic, since alerting is all it does."""

    alerts_topic_arn: str = Field(min_length=20)
