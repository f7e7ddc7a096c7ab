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
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import TypeAdapter, ValidationError

from backstop.config import AnyDatabase, Database
from backstop.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

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


class ParameterCatalog:
    """The catalog of one deploy, read from Parameter Store and checked against the deploy's digest."""

    def __init__(self, ssm: SSMClient, path: str, expected: str) -> None:
        self._ssm = ssm
        self._path = path.rstrip("/")
        self._expected = expected

    def entries(self) -> dict[str, str]:
        """Every parameter directly under the path, by part name; ConfigError unless they match the digest."""
        found: dict[str, str] = {}
        try:
            pages = self._ssm.get_paginator("get_parameters_by_path").paginate(Path=self._path, Recursive=False)
            for page in pages:
                for parameter in page["Parameters"]:
                    found[parameter["Name"].rsplit("/", 1)[1]] = parameter["Value"]
        except ClientError as exc:
            error = exc.response.get("Error", {})
            reason = f"{error.get('Code', 'error')}: {error.get('Message', '')}"
            raise ConfigError(f"The database catalog {self._path} cannot be read ({reason}).") from None
        except BotoCoreError as exc:
            raise ConfigError(f"The database catalog {self._path} cannot be read ({exc}).") from None
        if digest(found) != self._expected:
            raise ConfigError(
                f"The database catalog {self._path} ({len(found)} databases) is not the one this function was "
                "deployed with: a parameter was changed outside a deploy, or a deploy is under way; "
                "deploy again (cdk deploy) and retry."
            )
        return found

    def databases(self) -> tuple[AnyDatabase, ...]:
        """The catalog's databases, in name order."""
        return tuple(db for db, _document in self.read())

    def read(self) -> list[tuple[AnyDatabase, dict[str, Any]]]:
        """The catalog's databases in name order, each with the JSON object it was written from."""
        found: dict[str, dict[str, Any]] = {}
        for part, value in sorted(self.entries().items()):
            try:
                databases = json.loads(value)
            except json.JSONDecodeError:
                databases = None
            if not isinstance(databases, dict):
                raise ConfigError(f"The catalog part {self._path}/{part} is not a JSON object of databases.")
            for name, doc in databases.items():
                if name in found:
                    raise ConfigError(f"The catalog {self._path} holds database {name} twice.")
                found[name] = doc
        return [(_parse(name, doc), doc) for name, doc in sorted(found.items())]


def _parse(name: str, doc: object) -> AnyDatabase:
    try:
        db = _DATABASE.validate_python(doc)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ConfigError(f"The catalog entry of database {name}: {where}: {first['msg']}.") from None
    if db.name != name:
        raise ConfigError(f"The catalog entry {name} describes database {db.name}.")
    return db
