"""An in-memory database catalog: what a deploy wrote, read back as ``ParameterCatalog`` reads it."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from pydantic import TypeAdapter

from backstop.config import AnyDatabase, Database
from backstop.config.catalog import catalog_path, document, parameters_of, parse_database
from backstop.errors import ConfigError
from tests.fakes.faults import Faulty, faulty

_DATABASE: TypeAdapter[AnyDatabase] = TypeAdapter(Database)


class FakeCatalog(Faulty):
    """The catalog of one deploy: ``databases`` (models, or dicts as in backstop.yaml) as a function reads them.

    Every read gives new models parsed from each database's JSON document, in name order, like the real
    reader. ``change_outside_a_deploy`` plays a parameter changed, added or removed since the deploy:
    the digest no longer matches and every read is refused with ConfigError.
    """

    def __init__(self, databases: Iterable[AnyDatabase | dict[str, Any]] = (), *, stack: str = "Backstop") -> None:
        self.path = catalog_path(stack)
        self._documents: dict[str, str] = {}
        self._parts = 0
        self._changed = False
        self.deploy(databases)

    def deploy(self, databases: Iterable[AnyDatabase | dict[str, Any]]) -> None:
        """Replace the catalog with ``databases``, as a deploy does (and as the function deployed with it expects)."""
        parsed = [db if not isinstance(db, dict) else _DATABASE.validate_python(db) for db in databases]
        names = [db.name for db in parsed]
        if len(set(names)) != len(names):
            raise ValueError(f"a deploy names each database once: {sorted(names)}")
        self._documents = {db.name: json.dumps(document(db), sort_keys=True) for db in parsed}
        self._parts = len(parameters_of(parsed))
        self._changed = False

    def change_outside_a_deploy(self) -> None:
        """Someone with ssm:PutParameter changed the catalog: a function deployed before refuses to read it."""
        self._changed = True

    @faulty
    def read(self) -> list[tuple[AnyDatabase, dict[str, Any]]]:
        if self._changed:
            raise ConfigError(
                f"The database catalog {self.path} ({self._parts} parameters) is not the one this function was "
                "deployed with: a parameter was changed outside a deploy, or a deploy is under way; "
                "deploy again (cdk deploy) and retry."
            )
        found = {name: json.loads(text) for name, text in self._documents.items()}
        return [(parse_database(name, doc), doc) for name, doc in sorted(found.items())]

    @faulty
    def databases(self) -> tuple[AnyDatabase, ...]:
        return tuple(db for db, _document in self.read())
