"""The functions' environment, validated once per container (values are names and ARNs, never secrets)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, Json, ValidationError

from backstop.config import Config, Database, ObjectLock, Replica, Storage, Upload
from backstop.errors import ConfigError


class _Environment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        fields = {name: environ.get(f"BACKSTOP_{name.upper()}") for name in cls.model_fields}
        try:
            return cls.model_validate({k: v for k, v in fields.items() if v})
        except ValidationError as exc:
            problems = "; ".join(_problem(e["loc"], e["msg"]) for e in exc.errors())
            raise ConfigError(f"The function's environment is invalid: {problems}.") from None


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    """``BACKSTOP_DATABASE: path: Field required``: the variable, where inside its JSON, and what is wrong."""
    # pydantic puts the engine of a tagged union in the path: the JSON has no such level.
    inside = [str(part) for part in loc[1:] if part not in {"sqlite", "files", "postgres", "mysql"}]
    return ": ".join([f"BACKSTOP_{str(loc[0]).upper()}", *([".".join(inside)] if inside else []), message])


class FunctionSettings(_Environment):
    """``BACKSTOP_*`` environment variables of a deployed function that reads or writes the vault (freshness)."""

    bucket: str = Field(min_length=3)
    prefix: str = "backups"
    kms_key_id: str | None = None
    alerts_topic_arn: str | None = None
    replica: Json[Replica] | None = None
    """``BACKSTOP_REPLICA``: the vault's ``storage.replica`` (bucket and region), for the functions that check it."""


class DatabaseFunctionSettings(FunctionSettings):
    """The environment of one database's own function (backup, drill): the vault's settings and the database.

    ``BACKSTOP_DATABASE`` is the database's configuration as JSON, written at synth time (secret ARNs,
    never secrets). The function's events only name the database: this is the only source of the
    host, path and secret ARN it uses.
    """

    database: Json[Database]
    object_lock: Json[ObjectLock] | None = None
    """``BACKSTOP_OBJECT_LOCK``: the vault's ``storage.object_lock``, which every backup is written with."""

    def config(self) -> Config:
        """The one-database Config the services expect."""
        return Config(
            bucket=self.bucket,
            prefix=self.prefix,
            kms_key_id=self.kms_key_id,
            alerts_topic_arn=self.alerts_topic_arn,
            upload=Upload(),
            storage=Storage(object_lock=self.object_lock),
            databases=(self.database,),
        )


class CatalogSettings(_Environment):
    """The database catalog of a function that serves every database (``backstop.config.catalog``)."""

    catalog: str = Field(pattern=r"^/backstop/[A-Za-z0-9-]{1,128}/databases$")
    """``BACKSTOP_CATALOG``: the Parameter Store path of the stack's catalog."""
    catalog_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    """``BACKSTOP_CATALOG_DIGEST``: the SHA-256 of the catalog this function was deployed with."""


class SweepSettings(FunctionSettings, CatalogSettings):
    """The environment of the verification sweep: the vault, the catalog of the databases it covers, and its
    byte budget per run."""

    budget: int = Field(gt=0)
    """``BACKSTOP_BUDGET``: the bytes one run may re-read."""


class GuardSettings(FunctionSettings, CatalogSettings):
    """The environment of the keep-last-good guard: the vault and the catalog of the databases it holds
    backups of (their retention's ``keep_last`` is how many it holds)."""


class AlertSettings(_Environment):
    """The environment of the failure-alert function: only the topic, since alerting is all it does."""

    alerts_topic_arn: str = Field(min_length=20)
