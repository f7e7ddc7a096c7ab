"""Pre-restore copies are pruned by restore.keep_pre_restore, on real files, directories and servers.

After N restores only the policy's copies remain; the copy of a restore that failed or is still
running survives; nothing but the target's own copies (exactly ``<target>.pre-restore-<time>``,
``<dbname>_pre_restore_<time>``) is ever touched.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml
from click.testing import CliRunner
from rich.console import Console

import backstop.cli.output
from backstop.adapters.s3_store import S3Store
from backstop.cli import main
from backstop.config import Config, KeepPreRestore
from backstop.engines import mysql_restore
from backstop.engines import sqlite as sqlite_engine
from backstop.errors import IntegrityError, ManualInterventionError, ValidationError
from backstop.services.pre_restore import PreRestoreCopy, choose_pruned, local_copies
from backstop.services.restore import RestoreService
from backstop.services.server_restore import ServerRestoreService
from tests.conftest import BUCKET, create_orders_db
from tests.services import at, run_backup

FIRST = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


class Clock:
    """A clock the test moves: each restore happens when the test says."""

    def __init__(self, now: datetime = FIRST) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def yes(_plan: object) -> bool:
    return True


def policy(count: int, days: int | None) -> dict[str, Any]:
    return {"keep_pre_restore": {"count": count, "days": days}}


# -- the policy itself ------------------------------------------------------------------------------


def copies_at(*days: int, completed: bool = True) -> list[PreRestoreCopy]:
    return [PreRestoreCopy(f"copy-{d}", FIRST + timedelta(days=d), completed) for d in days]


def test_the_policy_keeps_the_newest_count_no_older_than_days() -> None:
    copies = copies_at(0, 1, 2, 3, 4, 10)
    now = current = FIRST + timedelta(days=10)

    pruned = choose_pruned(copies, KeepPreRestore(count=3, days=7), now, current)

    # days 0, 1 and 2 are past 7 days; 3 and 4 are among the newest three and young enough
    assert [c.name for c in pruned] == ["copy-0", "copy-1", "copy-2"]


def test_the_newest_completed_copy_is_kept_whatever_its_age() -> None:
    copies = copies_at(0, 1)
    now = FIRST + timedelta(days=400)

    pruned = choose_pruned(copies, KeepPreRestore(count=3, days=1), now, current=now)

    assert [c.name for c in pruned] == ["copy-0"]


def test_copies_not_completed_or_newer_than_the_pruning_restore_are_never_chosen() -> None:
    copies = [*copies_at(0, 1, 2), *copies_at(3, completed=False), *copies_at(20)]
    current = FIRST + timedelta(days=5)  # a later restore (day 20) completed while this one ran

    pruned = choose_pruned(copies, KeepPreRestore(count=1, days=None), FIRST + timedelta(days=21), current)

    assert [c.name for c in pruned] == ["copy-0", "copy-1", "copy-2"]


# -- local targets: SQLite files --------------------------------------------------------------------


@pytest.fixture
def orders(make_config: Callable[..., Config], store: S3Store, tmp_path: Path) -> Callable[..., Config]:
    """A committed backup of an 'orders' SQLite database; returns a config maker taking restore settings."""
    source = create_orders_db(tmp_path / "source.db", rows=200)

    def config(**restore: Any) -> Config:
        return make_config({"name": "orders", "engine": "sqlite", "path": str(source)}, restore=restore)

    run_backup(config(), store, at(21))
    return config


def generation(path: Path) -> int | None:
    """Which generation of the target a database file is (see ``mark_generation``); None for the backup's."""
    with closing(sqlite3.connect(path)) as conn:
        if not conn.execute("SELECT 1 FROM sqlite_schema WHERE name = 'generation'").fetchone():
            return None
        return int(conn.execute("SELECT k FROM generation").fetchone()[0])


def mark_generation(path: Path, k: int) -> None:
    """Make the target recognisable before restore ``k`` replaces it: its copy will say ``k``."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS generation (k INTEGER)")
        conn.execute("DELETE FROM generation")
        conn.execute("INSERT INTO generation VALUES (?)", (k,))
        conn.commit()


def restore_times(n: int, every: timedelta = timedelta(days=1)) -> list[datetime]:
    return [FIRST + i * every for i in range(n)]


def test_after_n_sqlite_restores_only_the_policys_copies_remain(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given a target restored into six times, a day apart, with a policy keeping three copies for 14 days
    (tmp_path / "live").mkdir()
    target = create_orders_db(tmp_path / "live" / "app.db", rows=5)
    clock = Clock()
    service = RestoreService(orders(**policy(3, 14)), store, clock=clock)
    pruned: list[str] = []

    # when each restore replaces the generation before it
    for k, when in enumerate(restore_times(6), 1):
        mark_generation(target, k)
        clock.now = when
        outcome = service.restore("orders", "latest", target, dry_run=False, confirm=yes)
        assert outcome.restored and outcome.warnings == ()
        pruned += outcome.pruned

    # then only the copies of the last three restores remain, holding generations 4, 5 and 6
    kept = local_copies(target)
    assert [c.name for c in kept] == [f"app.db.pre-restore-{t:%Y%m%dT%H%M%SZ}" for t in restore_times(6)[3:]]
    assert [generation(target.parent / c.name) for c in kept] == [4, 5, 6]
    assert all(c.completed for c in kept)
    assert sorted(Path(p).name for p in pruned) == [
        f"app.db.pre-restore-{t:%Y%m%dT%H%M%SZ}" for t in restore_times(6)[:3]
    ]
    # and nothing else is left beside the target than it, its copies and their markers
    assert sorted(p.name for p in target.parent.iterdir()) == sorted(
        ["app.db"] + [c.name for c in kept] + [f".{c.name}.done" for c in kept]
    )


def test_copies_older_than_days_are_pruned_even_within_count(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given restores on days 0, 1 and 30, keeping up to ten copies for seven days
    (tmp_path / "live").mkdir()
    target = create_orders_db(tmp_path / "live" / "app.db", rows=5)
    clock = Clock()
    service = RestoreService(orders(**policy(10, 7)), store, clock=clock)

    for k, when in enumerate([FIRST, FIRST + timedelta(days=1), FIRST + timedelta(days=30)], 1):
        mark_generation(target, k)
        clock.now = when
        service.restore("orders", "latest", target, dry_run=False, confirm=yes)

    # then only the day-30 copy, the newest, remains
    assert [generation(target.parent / c.name) for c in local_copies(target)] == [3]


def test_the_copy_of_a_restore_that_failed_after_the_swap_survives_pruning(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a restore whose validation of the swapped-in database fails (it is put back, its copy stays)
    (tmp_path / "live").mkdir()
    target = create_orders_db(tmp_path / "live" / "app.db", rows=5)
    clock = Clock()
    service = RestoreService(orders(**policy(1, None)), store, clock=clock)
    real_validation = sqlite_engine.run_validation_queries

    def failing_after_the_swap(path: Path, queries: Any, what: str) -> None:
        if what.startswith("Restored"):
            raise IntegrityError(f"{what}: injected validation failure.")
        real_validation(path, queries, what)

    mark_generation(target, 1)
    with monkeypatch.context() as patched:
        patched.setattr(sqlite_engine, "run_validation_queries", failing_after_the_swap)
        with pytest.raises(ValidationError, match="injected validation failure"):
            service.restore("orders", "latest", target, dry_run=False, confirm=yes)
    failed_copy = f"app.db.pre-restore-{FIRST:%Y%m%dT%H%M%SZ}"
    assert [(c.name, c.completed) for c in local_copies(target)] == [(failed_copy, False)]

    # when three restores then succeed, with a policy keeping one copy
    for k, when in enumerate(restore_times(4)[1:], 2):
        mark_generation(target, k)
        clock.now = when
        service.restore("orders", "latest", target, dry_run=False, confirm=yes)

    # then the failed restore's copy is still there, next to the newest completed copy only
    kept = local_copies(target)
    assert [c.name for c in kept] == [failed_copy, f"app.db.pre-restore-{restore_times(4)[3]:%Y%m%dT%H%M%SZ}"]
    assert generation(target.parent / failed_copy) == 1


def test_the_copy_of_a_restore_still_running_survives_another_restores_pruning(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two completed restores, then restore A, during whose swap (copy made, new database not yet
    # validated) a later restore B into the same target runs to the end with a policy keeping one copy
    (tmp_path / "live").mkdir()
    target = create_orders_db(tmp_path / "live" / "app.db", rows=5)
    clock = Clock()
    service = RestoreService(orders(**policy(1, None)), store, clock=clock)
    for k, when in enumerate(restore_times(2), 1):
        mark_generation(target, k)
        clock.now = when
        service.restore("orders", "latest", target, dry_run=False, confirm=yes)
    a_time, b_time = FIRST + timedelta(days=5), FIRST + timedelta(days=6)
    seen_by_b: list[tuple[str, bool]] = []
    real_preserve = sqlite_engine.SqliteEngine._preserve

    def preserve_then_b(self: Any, live: Path, copy: Path) -> None:
        real_preserve(self, live, copy)
        if copy.name.endswith(f"{a_time:%Y%m%dT%H%M%SZ}"):  # restore A has just made its copy
            clock.now = b_time
            mark_generation(target, 4)
            service.restore("orders", "latest", target, dry_run=False, confirm=yes)
            seen_by_b.extend((c.name, c.completed) for c in local_copies(target))
            clock.now = a_time

    monkeypatch.setattr(sqlite_engine.SqliteEngine, "_preserve", preserve_then_b)
    mark_generation(target, 3)
    clock.now = a_time

    # when A completes after B
    outcome = service.restore("orders", "latest", target, dry_run=False, confirm=yes)

    # then B pruned the older completed copy but not A's, which was not completed yet
    a_copy, b_copy = (f"app.db.pre-restore-{t:%Y%m%dT%H%M%SZ}" for t in (a_time, b_time))
    assert seen_by_b == [(a_copy, False), (b_copy, True)]
    # and A, completed, keeps its own copy and B's newer one (it prunes only copies older than itself)
    assert outcome.restored and outcome.pruned == ()
    assert [(c.name, c.completed) for c in local_copies(target)] == [(a_copy, True), (b_copy, True)]
    assert generation(target.parent / a_copy) == 3


def test_nothing_but_the_targets_own_copies_is_touched(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given, beside the target, names that resemble its copies without being them, each with a marker,
    # and a link named exactly like a completed copy, pointing at a directory elsewhere
    live = tmp_path / "live"
    live.mkdir()
    target = create_orders_db(live / "app.db", rows=5)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious").write_text("keep me")
    lookalikes = [
        "app.db.pre-restore-20200101T000000Z.bak",
        "app.db.pre-restore-old",
        "app.db.pre-restore-20201399T000000Z",  # not a real time
        "app.db.pre-restore-20200101t000000z",  # a server's stamp
        "xapp.db.pre-restore-20200101T000000Z",
        "other.db.pre-restore-20200101T000000Z",
        "app.db.pre-restore-20200101T000000Z.done",
    ]
    for name in lookalikes:
        (live / name).write_text(name)
        (live / f".{name}.done").write_text("{}")
    link = live / "app.db.pre-restore-20200102T000000Z"
    link.symlink_to(elsewhere, target_is_directory=True)
    (live / f".{link.name}.done").write_text("{}")
    clock = Clock()
    service = RestoreService(orders(**policy(1, 1)), store, clock=clock)

    # when the target is restored three times with a policy keeping one copy for a day
    warnings: list[str] = []
    for when in restore_times(3):
        clock.now = when
        warnings += service.restore("orders", "latest", target, dry_run=False, confirm=yes).warnings

    # then every lookalike is there as it was, the link and what it points at too (with a warning)
    for name in lookalikes:
        assert (live / name).read_text() == name
    assert link.is_symlink() and (elsewhere / "precious").read_text() == "keep me"
    assert any(str(link) in warning and "left in place" in warning for warning in warnings)
    # and of the target's own copies, only the newest remains
    own = [c.name for c in local_copies(target) if c.kind != "link"]
    assert own == [f"app.db.pre-restore-{restore_times(3)[2]:%Y%m%dT%H%M%SZ}"]


def test_a_restore_into_a_new_target_keeps_no_copy_and_prunes_nothing(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given an old completed copy of a target that no longer exists
    live = tmp_path / "live"
    live.mkdir()
    old = live / "app.db.pre-restore-20200101T000000Z"
    old.write_text("old")
    (live / f".{old.name}.done").write_text("{}")

    # when a restore creates the target again, with a policy keeping one copy for a day
    outcome = RestoreService(orders(**policy(1, 1)), store, clock=Clock()).restore(
        "orders", "latest", live / "app.db", dry_run=False, confirm=yes
    )

    # then it kept nothing and pruned nothing: the old copy is still the newest
    assert outcome.restored and outcome.pruned == ()
    assert old.read_text() == "old"


# -- local targets: directories ---------------------------------------------------------------------


def test_after_n_directory_restores_only_the_policys_copy_directories_remain(
    make_config: Callable[..., Config], store: S3Store, tmp_path: Path
) -> None:
    # given a backed-up directory and a target directory restored into four times, keeping two copies
    source = tmp_path / "uploads"
    (source / "a").mkdir(parents=True)
    (source / "a" / "one.txt").write_text("one")
    config = make_config({"name": "uploads", "engine": "files", "path": str(source)}, restore=policy(2, 14))
    run_backup(config, store, at(21), database="uploads")
    target = tmp_path / "live" / "uploads"
    target.mkdir(parents=True)
    clock = Clock()
    service = RestoreService(config, store, clock=clock)

    for k, when in enumerate(restore_times(4), 1):
        (target / "generation.txt").write_text(str(k))
        clock.now = when
        assert service.restore("uploads", "latest", target, dry_run=False, confirm=yes).restored

    # then two copy directories remain, of the last two restores, with what the target held then
    kept = local_copies(target)
    assert [(c.kind, c.completed) for c in kept] == [("directory", True)] * 2
    assert [(target.parent / c.name / "generation.txt").read_text() for c in kept] == ["3", "4"]
    assert [c.name for c in kept] == [f"uploads.pre-restore-{t:%Y%m%dT%H%M%SZ}" for t in restore_times(4)[2:]]


# -- PostgreSQL -------------------------------------------------------------------------------------


@pytest.fixture
def pg_backed_up(make_config: Callable[..., Config], store: S3Store) -> Iterator[tuple[str, Callable[..., Config]]]:
    from tests.engines.test_postgres_engine import admin, create_shop, postgres_entry

    source = f"bs_prune_src_{uuid.uuid4().hex[:10]}"
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{source}"')
    create_shop(source, orders=200)

    def config(**restore: Any) -> Config:
        return make_config(postgres_entry(source), restore=restore)

    run_backup(config(), store, at(21), database="pg")
    yield source, config
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{source}" WITH (FORCE)')


@pytest.fixture
def pg_target() -> Iterator[str]:
    """An existing target database; it and every database named after it are dropped afterwards."""
    from tests.engines.test_postgres_engine import admin

    name = f"bs_prune_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield name
    with admin() as conn:
        for (other,) in conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (name,)):
            conn.execute(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')


def pg_databases(prefix: str) -> list[str]:
    from tests.engines.test_postgres_engine import admin

    with admin() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s)", (prefix,)).fetchall()
    return sorted(str(r[0]) for r in rows)


def pg_create(*names: str) -> None:
    from tests.engines.test_postgres_engine import admin

    with admin() as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')


def pg_generation(dbname: str, k: int | None = None) -> int | None:
    """Set (``k``) or read which generation of the target ``dbname`` is."""
    from tests.engines.test_postgres_engine import connect

    with connect(dbname) as conn:
        if k is not None:
            conn.execute("CREATE TABLE IF NOT EXISTS generation (k int)")
            conn.execute("DELETE FROM generation")
            conn.execute("INSERT INTO generation VALUES (%s)", (k,))
            return k
        if conn.execute("SELECT to_regclass('generation')").fetchone() == (None,):
            return None
        row = conn.execute("SELECT k FROM generation").fetchone()
        return int(row[0]) if row else None


def pg_url(dbname: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{dbname}"


@pytest.mark.xdist_group("postgres")
def test_after_n_postgres_restores_only_the_policys_copies_remain(
    pg_backed_up: tuple[str, Callable[..., Config]], pg_target: str, store: S3Store
) -> None:
    # given a target restored into four times, a day apart, keeping two copies
    _source, config = pg_backed_up
    clock = Clock()
    service = ServerRestoreService(config(**policy(2, 14)), store, clock=clock)
    pruned: list[str] = []

    for k, when in enumerate(restore_times(4), 1):
        pg_generation(pg_target, k)
        clock.now = when
        outcome = service.restore("pg", "latest", pg_url(pg_target), dry_run=False, confirm=yes)
        assert outcome.restored
        pruned += outcome.pruned

    # then only the last two restores' copies remain, holding generations 3 and 4
    copies = [f"{pg_target}_pre_restore_{t:%Y%m%dt%H%M%Sz}" for t in restore_times(4)]
    assert pg_databases(f"{pg_target}_") == copies[2:]
    assert [pg_generation(name) for name in copies[2:]] == [3, 4]
    assert pruned == copies[:2]
    assert pg_generation(pg_target) is None  # the backup's content


@pytest.mark.xdist_group("postgres")
def test_a_postgres_copy_whose_restore_did_not_complete_and_lookalikes_survive(
    pg_backed_up: tuple[str, Callable[..., Config]], pg_target: str, store: S3Store
) -> None:
    # given the copy of a restore that did not complete (its fresh database is still there), a copy
    # someone is connected to, and databases named like copies without being the target's
    from tests.engines.test_postgres_engine import connect

    _source, config = pg_backed_up
    unfinished = (f"{pg_target}_pre_restore_20260101t000000z", f"{pg_target}_restore_20260101t000000z")
    in_use = f"{pg_target}_pre_restore_20260102t000000z"
    lookalikes = [
        f"{pg_target}_pre_restore_manual",
        f"{pg_target}_pre_restore_20260101t000000z_x",
        f"{pg_target}x_pre_restore_20260101t000000z",
        f"{pg_target}_pre_restore_20261399t000000z",
    ]
    pg_create(*unfinished, in_use, *lookalikes)
    clock = Clock()
    service = ServerRestoreService(config(**policy(1, None)), store, clock=clock)
    session = connect(in_use)
    try:
        # when the target is restored twice, keeping one copy
        warnings: list[str] = []
        for when in restore_times(2):
            clock.now = when
            warnings += service.restore("pg", "latest", pg_url(pg_target), dry_run=False, confirm=yes).warnings
    finally:
        session.close()

    # then the unfinished restore's copy and fresh database, the copy in use and the lookalikes remain;
    # of the completed copies, only the newest
    newest = f"{pg_target}_pre_restore_{restore_times(2)[1]:%Y%m%dt%H%M%Sz}"
    assert pg_databases(f"{pg_target}") == sorted([pg_target, *unfinished, in_use, *lookalikes, newest])
    assert any(in_use in warning and "in use" in warning for warning in warnings)


@pytest.mark.xdist_group("postgres")
def test_a_postgres_target_whose_derived_names_are_cut_prunes_nothing_and_says_so(
    pg_backed_up: tuple[str, Callable[..., Config]], store: S3Store
) -> None:
    # given a target whose name is longer than a pre-restore name keeps, and a database beginning alike
    _source, config = pg_backed_up
    target = f"bs_prune_long_{uuid.uuid4().hex[:12]}_" + "x" * 20
    neighbour = target[:-1] + "y"
    pg_create(target, neighbour)
    clock = Clock()
    service = ServerRestoreService(config(**policy(1, None)), store, clock=clock)
    try:
        # when restored twice, keeping one copy
        outcomes = []
        for when in restore_times(2):
            clock.now = when
            outcomes.append(service.restore("pg", "latest", pg_url(target), dry_run=False, confirm=yes))

        # then both copies remain and the outcome says why
        assert len([n for n in pg_databases(target[:34]) if "_pre_restore_" in n]) == 2
        assert all(o.pruned == () for o in outcomes)
        assert any("none are pruned" in w for w in outcomes[1].warnings)
    finally:
        from tests.engines.test_postgres_engine import admin

        with admin() as conn:
            for name in pg_databases(target[:34]):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- MariaDB ----------------------------------------------------------------------------------------


@pytest.fixture
def my_backed_up(
    make_config: Callable[..., Config], store: S3Store, new_mysql: Callable[[], str]
) -> tuple[str, Callable[..., Config]]:
    from tests.engines.test_mysql_engine import build_shop

    source = new_mysql()
    build_shop(source, orders=200)

    def config(**restore: Any) -> Config:
        entry = {"name": "shop", "engine": "mysql", "host": "127.0.0.1", "dbname": source, "user": "root"}
        return make_config(entry, restore=restore)

    run_backup(config(), store, at(21), database="shop")
    return source, config


@pytest.fixture
def new_mysql() -> Iterator[Callable[[], str]]:
    """Uniquely named MariaDB databases; they and every database named after them are dropped afterwards."""
    from tests.engines.test_mysql_engine import _server_is_up, execute

    if not _server_is_up():
        pytest.skip("no MariaDB/MySQL server at 127.0.0.1:3306")
    made: list[str] = []

    def create() -> str:
        name = f"bs_prune_{uuid.uuid4().hex[:12]}"
        execute("mysql", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        made.append(name)
        return name

    yield create
    for name in made:
        for other in my_databases(name):
            execute("mysql", f"DROP DATABASE IF EXISTS `{other}`")


def my_databases(prefix: str) -> list[str]:
    from tests.engines.test_mysql_engine import query

    rows = query("mysql", "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    return sorted(name for name in (str(r[0]) for r in rows) if name.startswith(prefix))


def my_generation(dbname: str, k: int | None = None) -> int | None:
    from tests.engines.test_mysql_engine import execute, query

    if k is not None:
        execute(dbname, "CREATE TABLE IF NOT EXISTS generation (k INT)", "DELETE FROM generation")
        execute(dbname, f"INSERT INTO generation VALUES ({int(k)})")
        return k
    if not query(dbname, "SHOW TABLES LIKE 'generation'"):
        return None
    rows = query(dbname, "SELECT k FROM generation")
    return int(rows[0][0]) if rows else None


def my_url(dbname: str) -> str:
    return f"mysql://root@127.0.0.1:3306/{dbname}"


@pytest.mark.xdist_group("mysql")
def test_after_n_mariadb_restores_only_the_policys_copies_remain(
    my_backed_up: tuple[str, Callable[..., Config]], new_mysql: Callable[[], str], store: S3Store
) -> None:
    # given a target restored into four times, a day apart, keeping two copies
    _source, config = my_backed_up
    target = new_mysql()
    clock = Clock()
    service = ServerRestoreService(config(**policy(2, 14)), store, clock=clock)

    for k, when in enumerate(restore_times(4), 1):
        my_generation(target, k)
        clock.now = when
        assert service.restore("shop", "latest", my_url(target), dry_run=False, confirm=yes).restored

    # then only the last two restores' copies remain, holding generations 3 and 4
    copies = [f"{target}_pre_restore_{t:%Y%m%dt%H%M%Sz}" for t in restore_times(4)]
    assert my_databases(f"{target}_") == copies[2:]
    assert [my_generation(name) for name in copies[2:]] == [3, 4]


@pytest.mark.xdist_group("mysql")
def test_the_copy_of_a_mariadb_restore_that_needed_intervention_survives_pruning(
    my_backed_up: tuple[str, Callable[..., Config]],
    new_mysql: Callable[[], str],
    store: S3Store,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a restore whose swap failed and whose undo failed too: the old tables are in its copy
    _source, config = my_backed_up
    target = new_mysql()
    my_generation(target, 1)
    clock = Clock()
    service = ServerRestoreService(config(**policy(1, None)), store, clock=clock)
    real_execute = mysql_restore.MysqlServer._execute
    renames: list[str] = []

    def failing_execute(self: mysql_restore.MysqlServer, statement: str | bytes, args: Any = None) -> None:
        text = statement.decode("latin-1") if isinstance(statement, bytes) else statement
        if text.startswith("RENAME TABLE"):
            renames.append(text)
            if len(renames) == 2:
                raise pymysql.err.OperationalError(1105, "injected failure renaming back")
        if text.startswith("CREATE") and "VIEW `big_orders`" in text:
            raise pymysql.err.OperationalError(1105, "injected failure creating a view")
        real_execute(self, statement, args)

    with monkeypatch.context() as patched:
        patched.setattr(mysql_restore.MysqlServer, "_execute", failing_execute)
        with pytest.raises(ManualInterventionError):
            service.restore("shop", "latest", my_url(target), dry_run=False, confirm=yes)
    failed_copy = f"{target}_pre_restore_{FIRST:%Y%m%dt%H%M%Sz}"
    assert my_generation(failed_copy) == 1

    # when three restores then succeed, keeping one copy
    for k, when in enumerate(restore_times(4)[1:], 2):
        my_generation(target, k)
        clock.now = when
        assert service.restore("shop", "latest", my_url(target), dry_run=False, confirm=yes).restored

    # then the failed restore's copy (and its fresh database) survive beside the newest completed copy
    newest = f"{target}_pre_restore_{restore_times(4)[3]:%Y%m%dt%H%M%Sz}"
    assert my_databases(f"{target}_pre_restore_") == [failed_copy, newest]
    assert my_databases(f"{target}_restore_") == [f"{target}_restore_{FIRST:%Y%m%dt%H%M%Sz}"]
    assert my_generation(failed_copy) == 1 and my_generation(newest) == 4


# -- what backstop shows ----------------------------------------------------------------------------


def config_file(tmp_path: Path, work_dir: Path, database: dict[str, Any], **restore: Any) -> Path:
    path = tmp_path / "backstop.yaml"
    document = {"bucket": BUCKET, "prefix": "backups", "work_dir": str(work_dir), "databases": [database]}
    path.write_text(yaml.safe_dump({**document, "restore": restore}), encoding="utf-8")
    return path


def test_backstop_restore_reports_what_it_pruned_and_list_shows_the_copies_left(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path, work_dir: Path
) -> None:
    # given a declared staging target and a configuration keeping one copy
    (tmp_path / "live").mkdir()
    target = create_orders_db(tmp_path / "live" / "app.db", rows=5)
    source = orders().database("orders")
    entry = {"name": "orders", "engine": "sqlite", "path": str(source.path)}
    entry["restore_targets"] = {"staging": {"path": str(target)}}
    config = config_file(tmp_path, work_dir, entry, keep_pre_restore={"count": 1, "days": None})
    runner = CliRunner()

    def restore() -> dict[str, Any]:
        result = runner.invoke(
            main, ["--config", str(config), "restore", "orders", "--to", str(target), "--yes", "--json"]
        )
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.stdout))

    # when it is restored into twice (the clock moves between them)
    first = restore()
    time.sleep(1.1)  # the command's own clock: copies are named to the second
    second = restore()

    # then the second restore reports the first one's copy as pruned
    assert first["pruned"] == [] and second["pruned"] == [first["pre_restore"]]
    # and `backstop list --pre-restore` shows the one copy left, completed
    listed = runner.invoke(main, ["--config", str(config), "list", "orders", "--pre-restore", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert [(r["target"], r["copy"], r["completed"]) for r in rows] == [
        ("staging", Path(second["pre_restore"]).name, True)
    ]


def test_backstop_list_pre_restore_says_which_copies_are_never_pruned(
    orders: Callable[..., Config], store: S3Store, tmp_path: Path, work_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backstop.cli.output, "out", Console(highlight=False, soft_wrap=True, width=200))  # no wrapping
    # given a staging target with one completed copy and the copy of a restore that did not complete
    live = tmp_path / "live"
    live.mkdir()
    target = create_orders_db(live / "app.db", rows=5)
    done, unfinished = live / "app.db.pre-restore-20261101T000000Z", live / "app.db.pre-restore-20261102T000000Z"
    done.write_text("old")
    (live / f".{done.name}.done").write_text("{}")
    unfinished.write_text("older")
    source = orders().database("orders")
    entry = {"name": "orders", "engine": "sqlite", "path": str(source.path)}
    config = config_file(tmp_path, work_dir, {**entry, "restore_targets": {"staging": {"path": str(target)}}})

    # when the copies are listed
    result = CliRunner().invoke(main, ["--config", str(config), "list", "orders", "--pre-restore"])

    # then both are shown, oldest first, and the unfinished one is said never to be pruned
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if "app.db.pre-restore-" in line]
    assert len(lines) == 2
    assert done.name in lines[0] and "completed" in lines[0] and "not completed" not in lines[0]
    assert unfinished.name in lines[1] and "never pruned" in lines[1]


@pytest.mark.xdist_group("postgres")
def test_backstop_list_pre_restore_shows_a_servers_copies(
    pg_backed_up: tuple[str, Callable[..., Config]], pg_target: str, store: S3Store, tmp_path: Path, work_dir: Path
) -> None:
    # given a declared PostgreSQL target restored into twice, and an unfinished restore's copy beside it
    from tests.engines.test_postgres_engine import postgres_entry

    source, config = pg_backed_up
    clock = Clock()
    service = ServerRestoreService(config(**policy(3, None)), store, clock=clock)
    for when in restore_times(2):
        clock.now = when
        service.restore("pg", "latest", pg_url(pg_target), dry_run=False, confirm=yes)
    unfinished = (f"{pg_target}_pre_restore_20260101t000000z", f"{pg_target}_restore_20260101t000000z")
    pg_create(*unfinished)
    entry = {**postgres_entry(source), "restore_targets": {"staging": {"dbname": pg_target}}}
    path = config_file(tmp_path, work_dir, entry)

    # when the copies are listed
    result = CliRunner().invoke(main, ["--config", str(path), "list", "pg", "--pre-restore", "--json"])

    # then the unfinished copy comes first, not completed, then the two restores' copies, completed
    assert result.exit_code == 0, result.output
    rows = [(r["copy"], r["completed"]) for r in json.loads(result.stdout)]
    assert rows == [
        (unfinished[0], False),
        *((f"{pg_target}_pre_restore_{t:%Y%m%dt%H%M%Sz}", True) for t in restore_times(2)),
    ]
