"""One module per engine; ``engine_for`` picks the one a database is configured with."""

from __future__ import annotations

from backstop.config import AnyDatabase, FilesDatabase, MysqlDatabase, PostgresDatabase, SqliteDatabase
from backstop.engines.base import Engine, LocalRestoreEngine
from backstop.engines.files import FilesEngine
from backstop.engines.sqlite import SqliteEngine
from backstop.errors import RestoreError


def engine_for(db: AnyDatabase) -> Engine:
    """The engine of a configured database (server engines are imported only when used)."""
    if isinstance(db, PostgresDatabase):
        from backstop.engines.postgres import PostgresEngine

        return PostgresEngine(db)
    if isinstance(db, MysqlDatabase):
        from backstop.engines.mysql import MysqlEngine

        return MysqlEngine(db)
    return local_restore_engine(db)


def local_restore_engine(db: AnyDatabase) -> LocalRestoreEngine:
    """The engine of a database that restores into a local path (``backstop restore --to PATH``)."""
    if isinstance(db, SqliteDatabase):
        return SqliteEngine(db)
    if isinstance(db, FilesDatabase):
        return FilesEngine(db)
    raise RestoreError(
        f"{db.name} is a {db.engine} database: it restores into a database server, not into a local path."
    )
