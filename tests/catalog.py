"""The database catalog of a deployed function, written to the emulated Parameter Store as the stack writes it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import boto3
import pytest
from pydantic import TypeAdapter

from backstop.config import AnyDatabase, Database
from backstop.config.catalog import catalog_path, digest, parameters_of

STACK = "Backstop"


def publish_catalog(
    monkeypatch: pytest.MonkeyPatch, databases: Iterable[AnyDatabase | dict[str, Any]], *, stack: str = STACK
) -> dict[str, str]:
    """Parameters ``/backstop/<stack>/databases/<name>`` for ``databases``, and the function's
    ``BACKSTOP_CATALOG`` and ``BACKSTOP_CATALOG_DIGEST`` naming them; returns the parameters by part."""
    adapter: TypeAdapter[AnyDatabase] = TypeAdapter(Database)
    parsed = [db if not isinstance(db, dict) else adapter.validate_python(db) for db in databases]
    entries = parameters_of(parsed)
    path = catalog_path(stack)
    ssm = boto3.client("ssm")
    for name, value in entries.items():
        ssm.put_parameter(Name=f"{path}/{name}", Value=value, Type="String", Overwrite=True)
    monkeypatch.setenv("BACKSTOP_CATALOG", path)
    monkeypatch.setenv("BACKSTOP_CATALOG_DIGEST", digest(entries))
    return entries


def sqlite_entries(*names: str, **retention: dict[str, int]) -> list[dict[str, Any]]:
    """SQLite databases by name (the path is never opened by the functions that read the catalog)."""
    return [
        {
            "name": n,
            "engine": "sqlite",
            "path": f"/mnt/data/{n}.db",
            **({"retention": retention[n]} if n in retention else {}),
        }
        for n in names
    ]
