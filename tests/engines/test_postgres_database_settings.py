"""What belongs to the database itself, not to its objects: its settings, comment and grants.

A custom-format archive carries them (pg_restore emits them only with --create, which a restore
into a fresh database of another name cannot use); Backstop applies them to the fresh database,
and names in the outcome any it could not.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from backstop.adapters.s3_store import S3Store
from backstop.engines.postgres import ArchiveToc, DatabaseStatement, database_statements, unrestorable_statements
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_postgres_engine import NAME, admin, postgres_entry
from tests.engines.test_postgres_ownership import (
    Roles,
    app_database,
    owned_database,
    restore_url,
    roles,  # noqa: F401 - the fixture
)
from tests.engines.test_postgres_restore import drop_derived, yes
from tests.services import at, leftovers, run_backup

pytestmark = pytest.mark.xdist_group("postgres")


def database_level(dbname: str) -> dict[str, Any]:
    """The comment, the settings for every role (setrole 0), the ACL and the owner of ``dbname``."""
    with admin() as conn:
        row = conn.execute(
            """
            SELECT shobj_description(d.oid, 'pg_database'),
                   (SELECT setconfig FROM pg_db_role_setting s WHERE s.setdatabase = d.oid AND s.setrole = 0),
                   d.datacl::text[], pg_get_userbyid(d.datdba), d.datconnlimit
            FROM pg_database d WHERE d.datname = %s
            """,
            (dbname,),
        ).fetchone()
        assert row is not None
        per_role = conn.execute(
            "SELECT pg_get_userbyid(s.setrole), s.setconfig FROM pg_db_role_setting s "
            "JOIN pg_database d ON d.oid = s.setdatabase WHERE d.datname = %s AND s.setrole <> 0",
            (dbname,),
        ).fetchall()
    comment, settings, acl, owner, limit = row
    return {"comment": comment, "settings": settings, "acl": acl, "owner": owner, "limit": limit, "per_role": per_role}


def test_database_settings_comment_and_grants_come_back_and_what_cannot_is_named(
    roles: Roles,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given the application's database with a comment (quote and all), settings, a connection limit and grants
    source = app_database(roles)
    with admin() as conn:
        db, reader = sql.Identifier(source), sql.Identifier(roles.reader)
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal("the shop's data; DATABASE x")))
        conn.execute(sql.SQL("ALTER DATABASE {} SET work_mem TO '7MB'").format(db))
        conn.execute(sql.SQL("ALTER DATABASE {} SET search_path TO shop, public").format(db))
        conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 50").format(db))
        conn.execute(sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(db))
        conn.execute(sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, reader))
        # a per-role setting: only a superuser or CREATEROLE may set it for another role
        conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} SET statement_timeout TO '5s'").format(reader, db))
    expected = database_level(source)
    config = make_config(postgres_entry(source))
    run_backup(config, store, at(21), database=NAME)
    target = owned_database(roles.app)

    # when the minimal restore role restores it over another database
    outcome = ServerRestoreService(config, store).restore(
        NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
    )

    try:
        # then the comment, the settings, the grants and the owner are those of the backup
        restored = database_level(target)
        assert outcome.restored
        kept = ("comment", "settings", "acl", "owner", "limit")
        assert {k: restored[k] for k in kept} == {k: expected[k] for k in kept}
        assert expected["acl"] and any(a.startswith(f"{roles.reader}=c/") for a in expected["acl"])
        # and the one it may not restore is named in the outcome, not silently dropped
        assert restored["per_role"] == []
        assert [w for w in outcome.warnings if roles.reader in w and "statement_timeout" in w], outcome.warnings
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)


# -- which statements of an archive about its database are run, and how --------------------------------


def statements(database_sql: str, dbname: str = "shop") -> list[DatabaseStatement]:
    toc = ArchiveToc(dbname=dbname, database_owner="app", owners=frozenset({"app"}), database_sql=database_sql)
    return database_statements(toc, "shop_restore_20261121t020000z")


def test_the_archive_statements_about_its_database_are_run_on_the_fresh_one() -> None:
    # given what pg_restore --create prints for a database's own entries (session settings and creation included)
    printed = """
\\restrict abc
SET statement_timeout = 0;
SELECT pg_catalog.set_config('search_path', '', false);
CREATE DATABASE shop WITH TEMPLATE = template0 ENCODING = 'UTF8';
ALTER DATABASE shop OWNER TO app;
\\connect shop
COMMENT ON DATABASE shop IS 'it''s; DATABASE shop
on two lines';
ALTER DATABASE shop SET search_path TO 'app', 'public';
ALTER ROLE reader IN DATABASE shop SET work_mem TO '3MB';
REVOKE CONNECT,TEMPORARY ON DATABASE shop FROM PUBLIC;
GRANT CONNECT ON DATABASE shop TO reader;
"""

    # when they are read, then each is rewritten to act on the fresh database, the rest left out
    fresh = '"shop_restore_20261121t020000z"'
    assert [s.sql for s in statements(printed)] == [
        f"COMMENT ON DATABASE {fresh} IS 'it''s; DATABASE shop\non two lines'",
        f"ALTER DATABASE {fresh} SET search_path TO 'app', 'public'",
        f"ALTER ROLE reader IN DATABASE {fresh} SET work_mem TO '3MB'",
        f"REVOKE CONNECT,TEMPORARY ON DATABASE {fresh} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {fresh} TO reader",
    ]


@pytest.mark.parametrize(
    "crafted",
    [
        "GRANT ALL ON DATABASE shop, prod TO intruder",
        "ALTER DATABASE shop RENAME TO prod",
        "ALTER DATABASE shop SET TABLESPACE elsewhere",
        "ALTER DATABASE prod SET work_mem TO '1GB'",
        "COMMENT ON DATABASE \"Shop\" IS 'case matters when quoted'",
        "COMMENT ON DATABASE shop IS 'x'; DROP TABLE orders",
        "DROP DATABASE prod",
        "ALTER ROLE intruder SUPERUSER",
        "SET ROLE postgres",
    ],
)
def test_a_statement_that_could_reach_beyond_the_fresh_database_is_not_run_and_is_named(crafted: str) -> None:
    # given an archive whose database entries carry a statement Backstop does not apply to a database
    found = statements(crafted + ";")

    # then no part of it that acts beyond the archive's own database is run, and what is not run is named
    assert all(s.sql is None or s.sql.split()[:3] == ["COMMENT", "ON", "DATABASE"] for s in found)
    not_run = [s for s in found if s.sql is None]
    assert not_run and all(s.note == "not a statement Backstop applies to a database" for s in not_run)


def test_grants_made_by_another_role_are_restored_as_the_owners_and_said_so() -> None:
    printed = """
SET SESSION AUTHORIZATION delegate;
GRANT CONNECT ON DATABASE shop TO reader;
RESET SESSION AUTHORIZATION;
GRANT TEMPORARY ON DATABASE shop TO reader;
"""
    found = statements(printed)
    assert [(s.sql is not None, s.note) for s in found] == [
        (True, "granted by the database owner, not by delegate"),
        (True, None),
    ]


def test_the_plan_names_the_database_statements_a_restore_will_not_apply() -> None:
    toc = ArchiveToc(
        dbname="shop",
        database_owner="app",
        owners=frozenset({"app"}),
        database_sql="ALTER DATABASE prod SET work_mem TO '1GB';\nCOMMENT ON DATABASE shop IS 'kept';\n",
    )

    assert unrestorable_statements(toc) == [
        "Will not be restored: ALTER DATABASE prod SET work_mem TO '1GB' (not a statement Backstop applies to a "
        "database)."
    ]
