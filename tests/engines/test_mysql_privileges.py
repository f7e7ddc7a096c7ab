"""The least MySQL/MariaDB privileges a backup user and a restore user need, as docs/runbooks/restore.md lists them.

A backup and a restore run with users holding exactly those grants (created here, dropped after)
and give back the source exactly, DEFINERs and all; without any one of them, the backup or the
restore fails or gives back less.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pymysql
import pytest

from backstop.adapters.s3_store import S3Store
from backstop.config import MysqlDatabase
from backstop.errors import BackstopError
from backstop.manifest import Manifest
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_mysql_engine import (
    admin,
    build_shop,
    execute,
    new_database,  # noqa: F401 - the fixture
    query,
)
from tests.engines.test_mysql_object_metadata import MODE, create_objects, metadata
from tests.engines.test_mysql_restore import NAME, databases_like, drop_derived, entry, old_application
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("mysql")

# What docs/runbooks/restore.md grants (MariaDB 10.5.2 to 11.2; see there for MySQL and newer MariaDB).
BACKUP_GRANTS = (
    "GRANT SELECT, SHOW VIEW, TRIGGER, EVENT ON `{source}`.* TO {user}",
    "GRANT SELECT ON `mysql`.`proc` TO {user}",
)
RESTORE_PRIVILEGES = (
    "SELECT, INSERT, CREATE, DROP, ALTER, LOCK TABLES, CREATE VIEW, SHOW VIEW, TRIGGER, CREATE ROUTINE, "
    "ALTER ROUTINE, EVENT"
)
RESTORE_GRANTS = (
    f"GRANT {RESTORE_PRIVILEGES} ON `{{target}}`.* TO {{user}}",
    f"GRANT {RESTORE_PRIVILEGES} ON `{{target}}\\_restore\\_%`.* TO {{user}}",
    f"GRANT {RESTORE_PRIVILEGES} ON `{{target}}\\_pre\\_restore\\_%`.* TO {{user}}",
    "GRANT SELECT ON `mysql`.`proc` TO {user}",
    "GRANT PROCESS, CONNECTION ADMIN, SET USER ON *.* TO {user}",
)


def without(grants: tuple[str, ...], privilege: str) -> tuple[str, ...]:
    """``grants`` with ``privilege`` taken out of every grant naming it (a grant left with none is dropped)."""
    kept = []
    for grant in grants:
        verb, _, rest = grant.partition(" ON ")
        names = [name for name in verb.removeprefix("GRANT ").split(", ") if name != privilege]
        if names:
            kept.append(f"GRANT {', '.join(names)} ON {rest}")
    return tuple(kept)


@dataclass(frozen=True)
class Account:
    name: str
    password: str

    @property
    def sql(self) -> str:
        return f"'{self.name}'@'%'"


@pytest.fixture
def accounts() -> Iterator[Callable[[tuple[str, ...], dict[str, str]], Account]]:
    """Creates users with a password and exactly the given grants; drops them all afterwards."""
    made: list[Account] = []

    def create(grants: tuple[str, ...], names: dict[str, str]) -> Account:
        account = Account(f"bs_{uuid.uuid4().hex[:10]}", f"pw-{uuid.uuid4().hex}")
        execute("mysql", f"CREATE USER {account.sql} IDENTIFIED BY '{account.password}'")
        made.append(account)
        for grant in grants:
            execute("mysql", grant.format(user=account.sql, **names))
        return account

    yield create
    for account in made:
        execute("mysql", f"DROP USER IF EXISTS {account.sql}")


@dataclass
class Scene:
    source: str
    target: str
    owner: str

    @property
    def names(self) -> dict[str, str]:
        return {"source": self.source, "target": self.target.replace("_", "\\_")}


@pytest.fixture
def scene(
    new_database: Callable[[], str],  # noqa: F811
    accounts: Callable[[tuple[str, ...], dict[str, str]], Account],
) -> Iterator[Scene]:
    """A source whose objects an application account owns, and an existing target with objects of its own."""
    source, target = new_database(), new_database()
    owner = accounts(("GRANT SELECT, INSERT, UPDATE, DELETE ON *.* TO {user}",), {})  # what its objects do
    build_shop(source, orders=500)
    create_objects(source, f"`{owner.name}`@`%`", "utf8mb3", MODE, "app")
    old_application(target)
    yield Scene(source, target, f"`{owner.name}`@`%`")
    drop_derived(target)


def back_up_and_restore(
    scene: Scene,
    backup_user: Account,
    restore_user: Account,
    make_config: Callable[..., Any],
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> Manifest:
    """A backup as ``backup_user``, then its restore into the target as ``restore_user``, passwords from the env."""
    monkeypatch.setenv("BACKUP_PASSWORD", backup_user.password)
    monkeypatch.setenv("RESTORE_PASSWORD", restore_user.password)
    config = make_config(entry(scene.source, user=backup_user.name, password_env="BACKUP_PASSWORD"))
    manifest = run_backup(config, store, at(21), database=NAME).manifest
    target = MysqlDatabase.model_validate(
        entry(scene.target, user=restore_user.name, password_env="RESTORE_PASSWORD") | {"engine": "mysql"}
    )
    ServerRestoreService(config, store).restore_into(NAME, "latest", target, dry_run=False, confirm=lambda _: True)
    return manifest


def fingerprint(dbname: str) -> dict[str, Any]:
    """Every table's checksum and row count, and every object's ``metadata``: what a restore must give back."""
    with admin(dbname) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() "
            "AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1"
        )
        tables = [str(name) for (name,) in cur.fetchall()]
        cur.execute("CHECKSUM TABLE " + ", ".join(f"`{name}`" for name in tables) + " EXTENDED")
        checksums = {str(name).rpartition(".")[2]: value for name, value in cur.fetchall()}
    return {"checksums": checksums, "objects": metadata(dbname)}


def without_events(found: dict[str, Any]) -> dict[str, Any]:
    return {**found, "objects": {key: row for key, row in found["objects"].items() if not key.startswith("EVENT ")}}


def restored_exactly(scene: Scene, before: dict[str, Any], session: pymysql.connections.Connection[Any]) -> bool:
    """The target equals the source, DEFINERs, character sets and sql_modes included; the old target is kept
    whole; the other user's session on the target was disconnected."""
    kept = databases_like(f"{scene.target}_pre_restore_")
    try:
        with session.cursor() as cur:
            cur.execute("SELECT 1")
        disconnected = False
    except pymysql.MySQLError:
        disconnected = True
    return (
        fingerprint(scene.target) == fingerprint(scene.source)
        and len(kept) == 1
        and without_events(fingerprint(kept[0])) == without_events(before)  # the kept copy's are disabled
        and disconnected
    )


def test_backup_and_restore_work_with_exactly_the_documented_privileges(
    scene: Scene,
    accounts: Callable[[tuple[str, ...], dict[str, str]], Account],
    make_config: Callable[..., Any],
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a backup user and a restore user with exactly the documented grants, and a session of
    # another user on the target
    backup_user = accounts(BACKUP_GRANTS, scene.names)
    restore_user = accounts(RESTORE_GRANTS, scene.names)
    assert len(query("mysql", f"SHOW GRANTS FOR {restore_user.sql}")) == len(
        RESTORE_GRANTS
    )  # the global grant replaces USAGE
    before = fingerprint(scene.target)
    session = admin(scene.target)

    # when the source is backed up as one and restored as the other
    manifest = back_up_and_restore(scene, backup_user, restore_user, make_config, store, monkeypatch)

    # then the backup has no warning, the target is the source exactly, objects owned by their
    # original owner, the old target kept and the session disconnected
    assert manifest.warnings == ()
    assert restored_exactly(scene, before, session)
    assert {row[0] for row in metadata(scene.target).values()} == {scene.owner.replace("`", ""), "root@127.0.0.1"}


BACKUP_NEEDS = ["SELECT", "SHOW VIEW", "TRIGGER", "EVENT", "mysql.proc"]
RESTORE_NEEDS = [
    *RESTORE_PRIVILEGES.split(", "),
    *["the target", "the fresh database", "the pre-restore database", "mysql.proc"],
    *["PROCESS", "CONNECTION ADMIN", "SET USER"],
]


def weaker(grants: tuple[str, ...], need: str) -> tuple[str, ...]:
    """``grants`` without one privilege, or without the grant on one database."""
    places = {
        "the target": "ON `{target}`.*",
        "the fresh database": "_restore\\_%",
        "the pre-restore database": "_pre\\_restore\\_%",
        "mysql.proc": "`mysql`.`proc`",
    }
    if need in places:
        return tuple(grant for grant in grants if places[need] not in grant)
    return without(grants, need)


@pytest.mark.parametrize(
    ("side", "need"), [("backup", need) for need in BACKUP_NEEDS] + [("restore", need) for need in RESTORE_NEEDS]
)
def test_without_any_one_documented_privilege_the_backup_or_restore_fails_or_gives_back_less(
    side: str,
    need: str,
    scene: Scene,
    accounts: Callable[[tuple[str, ...], dict[str, str]], Account],
    make_config: Callable[..., Any],
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given the documented grants but one
    backup_grants = weaker(BACKUP_GRANTS, need) if side == "backup" else BACKUP_GRANTS
    restore_grants = weaker(RESTORE_GRANTS, need) if side == "restore" else RESTORE_GRANTS
    assert (backup_grants, restore_grants) != (BACKUP_GRANTS, RESTORE_GRANTS)
    backup_user, restore_user = accounts(backup_grants, scene.names), accounts(restore_grants, scene.names)
    before = fingerprint(scene.target)
    session = admin(scene.target)

    # when the source is backed up and restored with them, then one of them fails or the target is not the source
    try:
        back_up_and_restore(scene, backup_user, restore_user, make_config, store, monkeypatch)
    except BackstopError:
        return
    assert not restored_exactly(scene, before, session)


def test_a_backup_user_that_cannot_read_routines_is_warned_in_the_manifest(
    scene: Scene,
    accounts: Callable[[tuple[str, ...], dict[str, str]], Account],
    make_config: Callable[..., Any],
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a backup user without SELECT on mysql.proc: the dump tool leaves the routines it does not own out
    backup_user = accounts(weaker(BACKUP_GRANTS, "mysql.proc"), scene.names)
    monkeypatch.setenv("BACKUP_PASSWORD", backup_user.password)
    config = make_config(entry(scene.source, user=backup_user.name, password_env="BACKUP_PASSWORD"))

    # when the source is backed up
    manifest = run_backup(config, store, at(21), database=NAME).manifest

    # then the backup is committed with a warning that says so and what to grant
    assert manifest.warnings == (
        f"{backup_user.name} cannot read mysql.proc: the dump leaves out every stored procedure and function it "
        "does not own, without an error (grant SELECT ON mysql.proc, see docs/runbooks/restore.md)",
    )
