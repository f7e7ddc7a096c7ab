"""Validation of a restored PostgreSQL database: read-only, and as the application's role when one is configured."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from psycopg import sql

from backstop.adapters.s3_store import S3Store
from backstop.config import parse_config
from backstop.errors import ConfigError, RestoreError, ValidationError
from backstop.manifest import Manifest
from backstop.services.server_restore import ServerRestoreService
from tests.conftest import BUCKET
from tests.engines.test_postgres_engine import (
    NAME,
    connect,
    new_database,  # noqa: F401 - the fixture
    postgres_entry,
    table_checksums,
)
from tests.engines.test_postgres_ownership import (
    Roles,
    app_database,
    as_role,
    owned_database,
    restore_url,
    roles,  # noqa: F401 - the fixture
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


@pytest.mark.parametrize(
    "query",
    [
        "WITH d AS (DELETE FROM orders RETURNING 1) SELECT count(*) FROM d",
        "SELECT true; DELETE FROM orders",
        "SELECT true; COMMIT; DELETE FROM orders",
    ],
)
def test_a_validation_query_that_writes_fails_validation_and_changes_nothing(
    query: str,
    backed_up: tuple[str, Manifest, Callable[..., Any]],  # noqa: F811
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
) -> None:
    # given a validation query that deletes rows (and returns a true value if it is let through)
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    config = make_config(postgres_entry(source, validation_queries=["SELECT true", query]))

    try:
        # when the backup is restored
        with pytest.raises(ValidationError) as failure:
            ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

        # then validation fails on that query, and the target, untouched, is not replaced
        assert "Validation query 2 failed" in str(failure.value)
        assert "was not touched" in str(failure.value)
        assert table_checksums(target) == before
        assert databases_like(f"{target}_") == []
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)  # what a restore that let the query through kept


def test_validation_queries_run_as_the_configured_application_role(
    roles: Roles,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given the application's database and a validation query true only for the application's role
    source = app_database(roles)
    queries = [f"SELECT current_user = '{roles.app}'", "SELECT count(*) > 0 FROM shop.orders"]
    config = make_config(postgres_entry(source, app_role=roles.app, validation_queries=queries))
    run_backup(config, store, at(21), database=NAME)
    target = f"{source}_restored"

    try:
        # when the minimal restore role restores it
        outcome = ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

        # then the queries ran as the application and passed
        assert outcome.restored
        assert outcome.inspection is not None and "2 queries passed" in outcome.inspection.integrity.detail
    finally:
        drop_derived(target)
        with connect("postgres") as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


def test_a_restore_the_application_cannot_read_fails_validation_as_the_application(
    roles: Roles,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given a table the application's queries need but that its role may not read (owned, with its schema, by
    # another role, of which the restore role is a member)
    source = app_database(roles)
    owner = roles.make("ledger")
    with connect("postgres") as conn:
        conn.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner), sql.Identifier(roles.restore)))
    with connect(source) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA books AUTHORIZATION {}").format(sql.Identifier(owner)))
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(owner)))
        conn.execute("CREATE TABLE books.ledger (id int); INSERT INTO books.ledger VALUES (1)")
        conn.execute(sql.SQL("GRANT USAGE ON SCHEMA books TO {}").format(sql.Identifier(roles.app)))
    queries = ["SELECT count(*) = 1 FROM books.ledger"]
    config = make_config(postgres_entry(source, app_role=roles.app, validation_queries=queries))
    run_backup(config, store, at(21), database=NAME)
    target = owned_database(roles.app)
    with as_role(roles.app, target) as conn:
        conn.execute("CREATE TABLE kept (id int); INSERT INTO kept VALUES (1)")
    before = table_checksums(target)

    # when the restore role (which could read it) restores it
    with pytest.raises(ValidationError) as failure:
        ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

    # then validation, run as the application, fails naming the denied table, and the target is untouched
    assert "permission denied for table ledger" in str(failure.value)
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []


@pytest.mark.parametrize("exists", [True, False])
def test_a_restore_refuses_an_application_role_it_cannot_become_before_creating_anything(
    exists: bool,
    roles: Roles,  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
) -> None:
    # given an application role the restore role is not a member of, or one that does not exist
    source = app_database(roles)
    app_role = roles.reader if exists else f"backstop_nobody_{roles.suffix}"
    config = make_config(postgres_entry(source, app_role=app_role, validation_queries=["SELECT true"]))
    run_backup(config, store, at(21), database=NAME)
    target = f"{source}_restored"

    # when it is restored
    with pytest.raises(RestoreError) as refused:
        ServerRestoreService(config, store).restore(
            NAME, "latest", restore_url(roles.restore, target), dry_run=False, confirm=yes
        )

    # then it is refused saying what to do, and nothing was created
    remedy = f"GRANT {app_role} TO {roles.restore}" if exists else "does not exist on 127.0.0.1:5432"
    assert remedy in str(refused.value)
    assert databases_like(target) == []
    assert leftovers(work_dir) == []


def test_app_role_is_read_from_the_configuration() -> None:
    entry = {**postgres_entry("shop"), "app_role": "orders_app"}
    config = parse_config(yaml.safe_dump({"bucket": BUCKET, "databases": [entry]}))
    assert config.databases[0].app_role == "orders_app"  # a postgres database: only it has the field


@pytest.mark.parametrize("bad", ["app role", "1app", "x" * 64, ""])
def test_app_role_must_be_a_plain_role_name(bad: str) -> None:
    # given a postgres database whose app_role is not a plain role name
    entry = {**postgres_entry("shop"), "app_role": bad}
    text = yaml.safe_dump({"bucket": BUCKET, "databases": [entry]})

    # when the configuration is read, then it is refused at that field
    with pytest.raises(ConfigError) as refused:
        parse_config(text)
    assert "databases[0].app_role" in str(refused.value)


def test_app_role_is_only_for_postgres() -> None:
    entry = {"name": "m", "engine": "mysql", "host": "db", "dbname": "m", "user": "u", "app_role": "app"}
    with pytest.raises(ConfigError) as refused:
        parse_config(yaml.safe_dump({"bucket": BUCKET, "databases": [entry]}))
    assert "app_role" in str(refused.value)
