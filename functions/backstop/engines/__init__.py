"""One module per engine; ``engine_for`` picks the one a database is configured with."""

from __future__ import annotations

from backstop.config import FilesDatabase, SqliteDatabase
from backstop.engines.base import Engine
from backstop.engines.files import FilesEngine
from backstop.engines.sqlite import SqliteEngine


def engine_for(db: SqliteDatabase | FilesDatabase) -> Engine:
    """The engine of a configured database."""
    if isinstance(db, SqliteDatabase):
        return SqliteEngine(db)
    return FilesEngine(db)
