"""Restores keep who owns what, with a restore role that is no superuser; the documented minimal roles.

The restore role is the documented minimal one (docs/runbooks/restore.md): LOGIN CREATEDB, a member
of the roles that own the database's objects, nothing else. The application's role owns its
database, a schema, tables, sequences, a view and a SECURITY DEFINER function. After a restore the
owners are those of the backup, the application still reads and writes, and the function still runs
as its owner, not as whoever restored it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from backstop.adapters.s3_store import S3Store
from backstop.errors import ChecksumMismatchError, RestoreError
from backstop.manifest import Manifest
from backstop.services.download import download
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_postgres_engine import (
    ADMIN,
    HOST,
    NAME,
    PORT,
    admin,
    connect,
    new_database,  # noqa: F401 - the fixture
    postgres_entry,
    table_checksums,
)
from tests.engines.test_postgres_restore import (
    backed_up,  # noqa: F401 - the fixture
    databases_like,
    drop_derived,
    other_data,
    url,
    yes,
)
from tests.services import at, leftovers, run_backup

pytestmark = pytest.mark.xdist_group("postgres")


@dataclass(frozen=True)
class Roles:
    """Roles made for one test: the application, the restore role and a role the application grants to."""

    app: str
    restore: str
    reader: str
    suffix: str
    others: list[str] = field(default_factory=list)

    def make(self, what: str) -> str:
        """Another role (NOLOGIN) of this test, dropped with the others."""
        name = f"backstop_{what}_{self.suffix}"
        self.others.append(name)
        return create_role(name)


def create_role(name: str, options: str = "NOLOGIN") -> str:
    with admin() as conn:
        conn.execute(sql.SQL("CREATE ROLE {} {}").format(sql.Identifier(name), sql.SQL(options)))
    return name


def drop_roles(names: list[str]) -> None:
    """Drop the databases owned by ``names``, whatever they were granted on shared objects, then the roles."""
    with admin() as conn:
        existing = [str(r[0]) for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY(%s)", (names,))]
        if not existing:
            return
        owned = conn.execute(
            "SELECT datname FROM pg_database WHERE pg_get_userbyid(datdba) = ANY(%s)", (existing,)
        ).fetchall()
        for (datname,) in owned:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(str(datname))))
        # In the maintenance database, DROP OWNED also revokes what they hold on databases (shared objects).
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.SQL(", ").join(map(sql.Identifier, existing))))
        for name in existing:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


@pytest.fixture
def roles() -> Iterator[Roles]:
    """An application role (LOGIN), the minimal restore role (LOGIN CREATEDB, member of the application role,
    no superuser) and a reader role; every one dropped afterwards with all it owns."""
    suffix = uuid.uuid4().hex[:10]
    made = Roles(
        app=f"backstop_app_{suffix}",
        restore=f"backstop_restore_{suffix}",
        reader=f"backstop_reader_{suffix}",
        suffix=suffix,
    )
    try:
        create_role(made.app, "LOGIN")
        create_role(made.restore, "LOGIN CREATEDB NOSUPERUSER NOCREATEROLE")
        create_role(made.reader)
        with admin() as conn:
            conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(made.app), sql.Identifier(made.restore)))
        yield made
    finally:
        drop_roles([made.app, made.restore, made.reader, *made.others])


def as_role(role: str, dbname: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host=HOST, port=PORT, user=role, dbname=dbname, autocommit=True)


def owned_database(owner: str) -> str:
    """A new empty database owned by ``owner`` (dropped with the role by the ``roles`` fixture)."""
    name = f"backstop_test_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(name), sql.Identifier(owner)))
    return name


APP_SCHEMA = """
CREATE SCHEMA shop;
CREATE TABLE shop.customers (id bigserial PRIMARY KEY, name text NOT NULL);
CREATE SEQUENCE shop.invoice_numbers START 1000;
CREATE TABLE shop.orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers(id),
    invoice bigint NOT NULL DEFAULT nextval('shop.invoice_numbers'),
    amount_cents integer NOT NULL
);
CREATE VIEW shop.customer_totals AS
    SELECT c.id, c.name, coalesce(sum(o.amount_cents), 0) AS total
    FROM shop.customers c LEFT JOIN shop.orders o ON o.customer_id = c.id GROUP BY c.id;
CREATE FUNCTION shop.runs_as() RETURNS text LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog
    AS $$ SELECT current_user::text $$;
REVOKE EXECUTE ON FUNCTION shop.runs_as() FROM PUBLIC;
CREATE TABLE public.notes (id int PRIMARY KEY, body text);
INSERT INTO shop.customers (name) SELECT 'customer ' || i FROM generate_series(1, 20) AS i;
INSERT INTO shop.orders (customer_id, amount_cents) SELECT 1 + i % 20, i FROM generate_series(1, 200) AS i;
INSERT INTO public.notes VALUES (1, 'one'), (2, 'two');
"""


def app_database(roles: Roles) -> str:
    """A database owned by the application role, whose every object the application role created."""
    dbname = owned_database(roles.app)
    with as_role(roles.app, dbname) as conn:
        conn.execute(APP_SCHEMA)
        conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION shop.runs_as() TO {}").format(sql.Identifier(roles.reader)))
    return dbname


_OWNERS = """
SELECT 'namespace', '', n.nspname, pg_get_userbyid(n.nspowner) FROM pg_namespace n
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'class ' || c.relkind::text, n.nspname, c.relname, pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'function', n.nspname, p.proname, pg_get_userbyid(p.proowner)
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'database', '', '', pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()
"""


def owners(dbname: str) -> set[tuple[str, str, str, str]]:
    """Every schema, relation and function of ``dbname`` with its owner, and the database's own owner."""
    with connect(dbname) as conn:
        return {(str(a), str(b), str(c), str(d)) for a, b, c, d in conn.execute(_OWNERS).fetchall()}


def restore_url(role: str, dbname: str) -> str:
    return f"postgresql://{role}@{HOST}:{PORT}/{dbname}"


@pytest.fixture
def app_backup(
    roles: Roles, make_config: Callable[..., Any], store: S3Store
) -> tuple[str, Manifest, Callable[..., Any]]:
    """The application's database and its committed backup (taken as the backup user, postgres)."""
    source = app_database(roles)
    manifest = run_backup(make_config(postgres_entry(source)), store, at(21), database=NAME).manifest
    return source, manifest, make_config


def test_the_minimal_restore_role_is_no_superuser(roles: Roles) -> None:
    # the role every test of this module restores with: LOGIN CREATEDB, a member of the application role only
    with admin() as conn:
        row = conn.execute(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls, "
            "array(SELECT b.rolname::text FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid "
            "WHERE m.member = r.oid) FROM pg_roles r WHERE rolname = %s",
            (roles.restore,),
        ).fetchone()
    assert row == (False, False, True, False, [roles.app])


def test_the_documented_backup_role_backs_up_without_superuser(
    roles: Roles, make_config: Callable[..., Any], store: S3Store
) -> None:
    # given the application's database and the documented backup role: LOGIN, pg_read_all_data, nothing else
    source = app_database(roles)
    backup = f"backstop_backup_{roles.suffix}"
    roles.others.append(backup)
    create_role(backup, "LOGIN NOSUPERUSER")
    with admin() as conn:
        conn.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(backup)))

    # when it backs the database up
    manifest = run_backup(make_config(postgres_entry(source, user=backup)), store, at(21), database=NAME).manifest

    # then every table is in the backup, counted in the dump's snapshot, and the archive passed its check
    assert manifest.integrity.passed
    assert {name: stat.rows for name, stat in manifest.tables.items()} == {
        "public.notes": 2,
        "shop.customers": 20,
        "shop.orders": 200,
    }
    assert manifest.source["user"] == backup


def test_a_restore_by_a_non_superuser_keeps_every_owner_and_the_application_keeps_its_rights(
    roles: Roles, app_backup: tuple[str, Manifest, Callable[..., Any]], store: S3Store, work_dir: Path
) -> None:
    # given the application's database backed up, and an existing target the application owns
    source, _manifest, make_config = app_backup
    before = owners(source)
    target = owned_database(roles.app)

    # when the minimal restore role restores the backup over the target
    outcome = ServerRestoreService(make_config(postgres_entry(source)), store).restore(
        NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
    )

    try:
        # then the data is back, and no schema, relation, function or the database changed owner
        assert outcome.restored
        assert table_checksums(target) == table_checksums(source)
        after = owners(target)
        assert after == before
        assert ("database", "", "", roles.app) in after
        assert not any(owner == roles.restore for *_, owner in after)
        # the SECURITY DEFINER function runs as the application, not as the restore role (nor a superuser)
        with connect(target) as conn:
            assert conn.execute("SELECT shop.runs_as()").fetchone() == (roles.app,)
        # the application reads, writes, uses its sequence and its view
        with as_role(roles.app, target) as app:
            invoice = app.execute(
                "INSERT INTO shop.orders (customer_id, amount_cents) VALUES (1, 7) RETURNING invoice"
            ).fetchone()
            assert invoice is not None and int(invoice[0]) >= 1000
            app.execute("UPDATE public.notes SET body = 'changed' WHERE id = 1")
            app.execute("CREATE TABLE shop.added (id int)")
            total = app.execute("SELECT total FROM shop.customer_totals WHERE id = 1").fetchone()
            assert total is not None and int(total[0]) > 0
            assert app.execute("SELECT shop.runs_as()").fetchone() == (roles.app,)
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)


def test_a_restore_refuses_when_an_owning_role_does_not_exist_on_the_target_server(
    roles: Roles, make_config: Callable[..., Any], store: S3Store, work_dir: Path
) -> None:
    # given a backup with a table owned by a role that no longer exists, and an existing target
    gone = roles.make("gone")
    source = app_database(roles)
    with connect(source) as conn:
        conn.execute("CREATE TABLE public.legacy (id int)")
        conn.execute(sql.SQL("ALTER TABLE public.legacy OWNER TO {}").format(sql.Identifier(gone)))
    config = make_config(postgres_entry(source))
    run_backup(config, store, at(21), database=NAME)
    with admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(source)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(gone)))
    target = owned_database(roles.app)
    with as_role(roles.app, target) as conn:
        conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    before = table_checksums(target)

    # when the minimal restore role restores it
    with pytest.raises(RestoreError) as refused:
        ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

    # then it refuses in one sentence naming the missing role, and nothing was created or changed
    message = str(refused.value)
    assert f"role {gone}" in message and "does not exist" in message
    assert message.count(". ") == 0, message
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []


def test_a_restore_refuses_when_the_restore_role_cannot_act_as_an_owner(
    roles: Roles, make_config: Callable[..., Any], store: S3Store, work_dir: Path
) -> None:
    # given a backup with a table owned by a role the restore role is not a member of
    other = roles.make("other")
    source = app_database(roles)
    with connect(source) as conn:
        conn.execute("CREATE TABLE public.audit (id int)")
        conn.execute(sql.SQL("ALTER TABLE public.audit OWNER TO {}").format(sql.Identifier(other)))
    config = make_config(postgres_entry(source))
    run_backup(config, store, at(22), database=NAME)
    target = f"{source}_new"

    # when the minimal restore role restores it
    with pytest.raises(RestoreError) as refused:
        ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

    # then it refuses naming the role and the grant that would allow it, and creates nothing
    assert f"GRANT {other} TO {roles.restore}" in str(refused.value)
    assert databases_like(target) == []
    assert leftovers(work_dir) == []


def test_a_restore_refuses_to_give_objects_to_a_superuser_it_is_not(
    roles: Roles, make_config: Callable[..., Any], store: S3Store, work_dir: Path
) -> None:
    # given a backup whose database and objects are owned by the superuser postgres (the old --no-owner habit)
    source = owned_database(roles.app)
    with connect(source) as conn:
        conn.execute("CREATE TABLE public.t (id int)")
    config = make_config(postgres_entry(source))
    run_backup(config, store, at(21), database=NAME)
    target = f"{source}_new"

    # when the minimal restore role restores it
    with pytest.raises(RestoreError) as refused:
        ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

    # then it refuses: keeping a superuser's ownership needs a superuser, and nothing is created
    assert f"superuser {ADMIN}" in str(refused.value)
    assert databases_like(target) == []
    assert leftovers(work_dir) == []


# -- the archive's beginning, read before anything is created -----------------------------------------


def test_a_copy_altered_where_the_restore_reads_owners_is_refused_before_anything_is_created(
    backed_up: tuple[str, Manifest, Callable[..., Any]],  # noqa: F811
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an existing target, and a disk that alters the downloaded copy once its SHA-256 was checked
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)

    def download_then_rot(*args: Any, **kwargs: Any) -> Manifest:
        manifest = download(*args, **kwargs)
        stored = bytearray(args[3].read_bytes())
        stored[len(stored) // 2] ^= 0xFF
        args[3].write_bytes(bytes(stored))
        return manifest

    monkeypatch.setattr("backstop.services.server_restore.download", download_then_rot)

    try:
        # when it is restored
        with pytest.raises(ChecksumMismatchError) as failure:
            ServerRestoreService(make_config(postgres_entry(source)), store).restore(
                NAME, "latest", url(target), dry_run=False, confirm=yes
            )

        # then the checksum is named (pg_restore could not read the table of contents of what it was fed),
        # and no database was created: the target is as it was
        assert "the stored bytes were altered" in str(failure.value)
        assert "was not touched" not in str(failure.value)
        assert table_checksums(target) == before
        assert databases_like(f"{target}_") == []
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)
