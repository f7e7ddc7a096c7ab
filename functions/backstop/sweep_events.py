"""The input of the sweep schedule (``events/sweep/`` holds samples)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from backstop.config import DatabaseName


class SweepEvent(BaseModel):
    """The input of the verification sweep's schedule: the databases to sweep, the byte budget, the time.

    ``budget`` is the bytes one run may re-read (the configured ``sweep.budget`` unless given);
    the schedule fills ``checked_at`` with ``<aws.scheduler.scheduled-time>``, and without it the
    sweep records the current time.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    databases: tuple[DatabaseName, ...] = Field(min_length=1)
    budget: Annotated[int, Field(strict=True, gt=0)] | None = None
    checked_at: AwareDatetime | None = None

    @field_validator("databases")
    @classmethod
    def _named_once(cls, databases: tuple[str, ...]) -> tuple[str, ...]:
        repeated = sorted({name for name in databases if databases.count(name) > 1})
        if repeated:
            raise ValueError(f"each database is listed once; repeated: {', '.join(repeated)}")
        return databases
