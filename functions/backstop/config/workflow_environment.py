"""The restore and approval functions' environments: names, ARNs and the secret-free configuration, validated once.

``BACKSTOP_CONFIG_JSON`` is the configuration as JSON (bucket, prefix, key, alerts topic, restore
settings) without the databases, written by the stack; the databases, with their ``restore_targets``,
are the stack's catalog (``BACKSTOP_CATALOG``, checked against ``BACKSTOP_CATALOG_DIGEST``: see
``backstop.config.catalog``), so this environment is the same size for one database or a hundred. Neither
holds a secret: secret ARNs only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from backstop.config import AnyDatabase, Config
from backstop.errors import ConfigError

_STATE_MACHINE = r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[A-Za-z0-9_-]{1,80}$"


class _Environment(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Self:
        fields = {name: environ.get(f"BACKSTOP_{name.upper()}") for name in cls.model_fields}
        try:
            return cls.model_validate({k: v for k, v in fields.items() if v})
        except ValidationError as exc:
            problems = "; ".join(f"BACKSTOP_{str(e['loc'][0]).upper()}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"The {cls.__doc__} environment is invalid: {problems}.") from None


class WorkflowSettings(_Environment):
    """restore function's"""

    config_json: str = Field(min_length=2)
    catalog: str = Field(pattern=r"^/backstop/[A-Za-z0-9-]{1,128}/databases$")
    catalog_digest: str = Field(pattern=r"^[0-9a-f]{64}$")
    restore_table: str = Field(min_length=3)
    state_machine_arn: str = Field(pattern=_STATE_MACHINE)
    approval_key_arn: str = Field(min_length=8)

    def _document(self) -> dict[str, Any]:
        try:
            document = json.loads(self.config_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"BACKSTOP_CONFIG_JSON is not JSON ({exc.msg}).") from None
        if not isinstance(document, dict) or "databases" in document:
            raise ConfigError("BACKSTOP_CONFIG_JSON must be an object without databases (they are the catalog).")
        return document

    def config(self, catalog: Sequence[tuple[AnyDatabase, dict[str, Any]]]) -> Config:
        """The configuration: this environment's settings and the catalog's databases (as read, each with its
        JSON object) that have restore targets."""
        restorable = [document for db, document in catalog if db.restore_targets]
        try:
            return Config.model_validate({**self._document(), "databases": restorable})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            raise ConfigError(f"BACKSTOP_CONFIG_JSON: {where}: {first['msg']}.") from None


class ApprovalSettings(_Environment):
    """approval function's"""

    restore_table: str = Field(min_length=3)
    state_machine_arn: str = Field(pattern=_STATE_MACHINE)
    approval_key_arn: str = Field(min_length=8)
    distinct_approver: bool = False
    approvers: tuple[str, ...] = ()
    """``BACKSTOP_APPROVERS``: a JSON list of principal ARN patterns (``restore.approvers``)."""
    alerts_topic_arn: str | None = None

    @field_validator("approvers", mode="before")
    @classmethod
    def _json_list(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    @property
    def region(self) -> str:
        return self.state_machine_arn.split(":")[3]

    @property
    def account(self) -> str:
        return self.state_machine_arn.split(":")[4]
