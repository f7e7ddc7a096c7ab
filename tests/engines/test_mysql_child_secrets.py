"""No MySQL tool Backstop starts gets the password in its arguments or its environment, in a backup or a restore."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.services.server_restore import ServerRestoreService
from tests.engines.test_mysql_engine import (
    HOST,
    PORT,
    build_shop,
    new_database,  # noqa: F401 - the fixture
    row_counts,
)
from tests.engines.test_mysql_privileges import Account, accounts  # noqa: F401 - the fixture
from tests.engines.test_mysql_restore import NAME, drop_derived, entry, old_application
from tests.services import at, leftovers, run_backup

pytestmark = pytest.mark.xdist_group("mysql")


class Child:
    """One process started through subprocess.Popen: its arguments and the environment it was given."""

    def __init__(self, argv: list[str], env: dict[str, str] | None) -> None:
        self.argv = argv
        self.env = env

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[Child]:
    """Every child process started from now on (subprocess.run starts them through Popen too)."""
    started: list[Child] = []
    real = subprocess.Popen

    class Recording(real):  # type: ignore[valid-type,misc]  # a subclass of the Popen the code uses
        def __init__(self, args: Any, *rest: Any, **options: Any) -> None:
            env = options.get("env")
            started.append(Child([str(arg) for arg in args], None if env is None else dict(env)))
            super().__init__(args, *rest, **options)

    monkeypatch.setattr(subprocess, "Popen", Recording)
    return started


def test_no_mysql_tool_gets_the_password_in_its_arguments_or_environment(
    new_database: Callable[[], str],  # noqa: F811
    accounts: Callable[[tuple[str, ...], dict[str, str]], Account],  # noqa: F811
    children: list[Child],
    make_config: Callable[..., Any],
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a user with a password taken from $SHOP_DB_PASSWORD, the same password in MYSQL_PWD and
    # in an unrelated variable of our own environment
    source, target = new_database(), new_database()
    build_shop(source, orders=200)
    old_application(target)
    user = accounts(("GRANT ALL ON *.* TO {user}",), {})
    for name in ("SHOP_DB_PASSWORD", "MYSQL_PWD", "SOME_COPY_OF_IT"):
        monkeypatch.setenv(name, user.password)
    config = make_config(entry(source, user=user.name, password_env="SHOP_DB_PASSWORD"))

    try:
        # when the source is backed up and restored into the target as that user
        run_backup(config, store, at(21), database=NAME)
        ServerRestoreService(config, store).restore(
            NAME, "latest", f"mysql://{user.name}@{HOST}:{PORT}/{target}", dry_run=False, confirm=lambda _: True
        )

        # then the dump tool and the client ran (and their version and option probes), each given an
        # environment of its own without the password, and arguments without it: the password went
        # only through the option file named first
        assert row_counts(target) == row_counts(source)
        programs = [child.program for child in children]
        assert "mariadb-dump" in programs and "mariadb" in programs
        for child in children:
            assert child.env is not None, f"{child.program} inherits our environment"
            assert user.password not in " ".join(child.argv), child.program
            assert not any(arg.startswith(("--password", "-p")) for arg in child.argv), child.program
            assert [name for name, value in child.env.items() if user.password in value] == [], child.program
            assert {"MYSQL_PWD", "SHOP_DB_PASSWORD", "SOME_COPY_OF_IT"}.isdisjoint(child.env), child.program
        loads = [child for child in children if child.program in ("mariadb-dump", "mariadb") and len(child.argv) > 2]
        assert loads and all(child.argv[1].startswith("--defaults-extra-file=") for child in loads)
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)
