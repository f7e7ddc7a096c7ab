"""The database catalog: each database's configuration as a Parameter Store parameter, bound to the deploy.

The functions that serve every database (restore, sweep, guard) cannot carry the databases in their
environment: Lambda holds at most 4 KB there, about six server databases with restore targets. The
stack writes the databases' secret-free configurations (secret ARNs, never secrets) as String
parameters ``/backstop/<stack>/databases/<part>``, each a JSON object of whole databases by name,
filled up to the free (standard) tier's 4 KB so the catalog costs few of the stack's 500 resources
(a database larger than that gets an advanced parameter of its own, up to 8 KB). Those functions get
the path and the catalog's digest, the SHA-256 of every parameter's name and value. A function reads
the whole path and refuses a catalog whose digest differs: a parameter added, removed or changed
outside a deploy (or read while a deploy is half-way) cannot redirect a restore or drop a database
from the sweep. The function's environment does not grow with the databases: the path and the digest
are the same size for one database or a hundred.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from backstop.config import AnyDatabase, Database
from backstop.errors import ConfigError

_DATABASE: TypeAdapter[AnyDatabase] = TypeAdapter(Database)


def catalog_path(stack_name: str) -> str:
    """The Parameter Store path of a stack's catalog (no trailing slash)."""
    return f"/backstop/{stack_name}/databases"


STANDARD_BYTES = 4096
"""A standard (free) parameter's largest value; an advanced one holds 8 KB."""


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def document(db: AnyDatabase) -> dict[str, Any]:
    """A database's configuration as the catalog holds it: JSON, defaults left out."""
    return db.model_dump(mode="json", exclude_defaults=True)


def digest(entries: Mapping[str, str]) -> str:
    """The SHA-256 (hex) of a catalog: every parameter's part name and value, in name order, each length-prefixed."""
    hashed = hashlib.sha256()
    for name in sorted(entries):
        for part in (name, entries[name]):
            data = part.encode("utf-8")
            hashed.update(len(data).to_bytes(8, "big") + data)
    return hashed.hexdigest()


def parameters_of(databases: Iterable[AnyDatabase]) -> dict[str, str]:
    """The catalog's parameters (value by part name ``000``, ``001`` ...): databases in name order, each part
    filled up to ``STANDARD_BYTES``; a database larger than that alone in its part."""
    parts: list[dict[str, Any]] = [{}]
    for db in sorted(databases, key=lambda d: d.name):
        if parts[-1] and len(_json({**parts[-1], db.name: document(db)}).encode("utf-8")) > STANDARD_BYTES:
            parts.append({})
        parts[-1][db.name] = document(db)
    return {f"{index:03d}": _json(part) for index, part in enumerate(parts) if part}


def parse_database(name: str, doc: object) -> AnyDatabase:
    try:
        db = _DATABASE.validate_python(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"The catalog entry of database {name}: {where}: {first['msg']}.") from None
    if db.name != name:
        raise ConfigError(f"The catalog entry {name} describes database {db.name}.")
    return db
