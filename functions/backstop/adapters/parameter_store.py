"""Parameter Store: the database catalog of a deploy, read and checked against the deploy's digest.

What the catalog holds and why is ``backstop.config.catalog``; this reads it with
``ssm:GetParametersByPath`` and turns Parameter Store's errors into one ConfigError sentence.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from backstop.config import AnyDatabase
from backstop.config.catalog import digest, parse_database
from backstop.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient


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
                f"The database catalog {self._path} ({len(found)} parameters) is not the one this function was "
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
        return [(parse_database(name, doc), doc) for name, doc in sorted(found.items())]
