"""An in-memory ``VerificationRecords``: drill and sweep sidecars and each database's last good drill."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Literal

from backstop.manifest import Manifest
from backstop.names import check_database_name, parse_backup_id
from tests.fakes.bucket import FakeBucket
from tests.fakes.faults import faulty

Kind = Literal["drill", "sweep"]


def as_stored(document: dict[str, Any]) -> str:
    """``document`` as ``S3Store`` writes it: JSON, anything else (a datetime) as its ``str``."""
    return json.dumps(document, sort_keys=True, default=str)


class FakeVerificationRecords(FakeBucket):
    """Sidecars and last-drill records kept as the JSON ``S3Store`` would write, read back as it would read them.

    A record comes back as JSON gives it (a datetime as text, a tuple as a list), never as the object
    that was written; ``sidecar_times`` gives the time of the latest write of each, whole seconds like S3.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sidecars: dict[tuple[str, Kind], tuple[str, datetime]] = {}
        """The JSON and write time of each sidecar, by backup id and kind."""
        self.drill_successes: dict[str, str] = {}
        """The JSON of each database's last successful drill."""

    @faulty
    def put_sidecar(self, manifest: Manifest, kind: Kind, document: dict[str, Any]) -> None:
        self._refuse_on_replica(f"writing the {kind} record of {manifest.backup_id}")
        parse_backup_id(manifest.backup_id)
        self.sidecars[(manifest.backup_id, kind)] = (as_stored(document), self._s3_time())

    @faulty
    def get_sidecar(self, backup_id: str, kind: Kind) -> dict[str, Any] | None:
        parse_backup_id(backup_id)
        stored = self.sidecars.get((backup_id, kind))
        if stored is None:
            return None
        document: dict[str, Any] = json.loads(stored[0])
        return document

    @faulty
    def sidecar_times(self, database: str, kind: Kind) -> dict[str, datetime]:
        check_database_name(database)
        return {
            backup_id: written
            for (backup_id, of_kind), (_, written) in sorted(self.sidecars.items())
            if of_kind == kind and parse_backup_id(backup_id)[0] == database
        }

    @faulty
    def put_last_drill_success(self, database: str, record: dict[str, Any]) -> None:
        self._refuse_on_replica(f"recording the last successful drill of {database}")
        self.drill_successes[check_database_name(database)] = as_stored(record)

    @faulty
    def last_drill_success(self, database: str) -> dict[str, Any] | None:
        stored = self.drill_successes.get(check_database_name(database))
        if stored is None:
            return None
        record: dict[str, Any] = json.loads(stored)
        return record
