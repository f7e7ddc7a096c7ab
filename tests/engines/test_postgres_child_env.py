"""No PostgreSQL tool Backstop starts ever gets the password: not in its argv, not in its environment.

The password is configured the way the command line takes it (``password_env``), and exported under
other names too (``PGPASSWORD``, a copy in another variable), as an operator's shell may have it.
Every child process of a backup, a verify, a dry run and a restore is recorded as it is started.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from backstop.adapters.s3_store import S3Store
from backstop.services.server_restore import ServerRestoreService
from backstop.services.verify import VerifyService
from tests.engines.test_postgres_engine import (
    NAME,
    create_shop,
    new_database,  # noqa: F401 - the fixture
    postgres_entry,
    table_checksums,
)
from tests.engines.test_postgres_restore import drop_derived, url, yes
from tests.services import at, run_backup

pytestmark = pytest.mark.xdist_group("postgres")

PASSWORD = "Pw-in-the-env-7c41e9"  # the sentinel searched for (the test server trusts 127.0.0.1)
PASSWORD_ENV = "BACKSTOP_TEST_PG_CHILD_PASSWORD"


Child = tuple[list[str], dict[str, str]]


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Child]]:
    """Every process started through subprocess (Popen, run) while the test runs: its argv and its environment."""
    started: list[Child] = []

    class Recorded(subprocess.Popen):  # type: ignore[type-arg]  # recorded for any output type
        def __init__(self, args: Any, *rest: Any, **kwargs: Any) -> None:
            env = kwargs.get("env")
            argv = [str(a) for a in args] if isinstance(args, list | tuple) else [str(args)]
            started.append((argv, dict(os.environ if env is None else env)))
            super().__init__(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", Recorded)
    yield started


@pytest.fixture
def password_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    monkeypatch.setenv("SOME_OTHER_COPY", PASSWORD)


def leaks(started: list[Child]) -> list[str]:
    """Where the password or its variable shows in the recorded children."""
    found = []
    for argv, env in started:
        tool = Path(argv[0]).name
        found += [f"{tool} argv {arg!r}" for arg in argv if PASSWORD in arg]
        found += [f"{tool} env {name}" for name, value in env.items() if PASSWORD in value or name == PASSWORD_ENV]
    return found


def tools(started: list[Child]) -> list[str]:
    """The tools started, ``<tool> --dbname`` for those that connected to a server."""
    return [
        Path(argv[0]).name + (" --dbname" if any(a.startswith("--dbname=") for a in argv) else "")
        for argv, _ in started
    ]


@pytest.mark.usefixtures("password_everywhere")
def test_no_postgres_tool_gets_the_password_in_a_backup_a_verify_a_dry_run_or_a_restore(
    children: list[Child],
    new_database: Callable[[], str],  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
) -> None:
    # given a database whose password comes from an environment variable (and sits in two others)
    source = new_database()
    create_shop(source, orders=100)
    target = new_database()
    config = make_config(postgres_entry(source, password_env=PASSWORD_ENV))

    try:
        # when it is backed up, verified, restored as a dry run and restored
        run_backup(config, store, at(21), database=NAME)
        backup = list(children)
        VerifyService(config, store).verify(NAME)
        service = ServerRestoreService(config, store)
        service.restore(NAME, "latest", url(target), dry_run=True, confirm=yes)
        outcome = service.restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

        # then every tool ran (pg_dump, its checks, the verify, the checks of the load and the load itself)
        assert outcome.restored and table_checksums(target) == table_checksums(source)
        assert {"pg_dump", "pg_dump --dbname", "pg_restore"} <= set(tools(backup))
        assert "pg_restore --dbname" in tools(children)
        assert len(children) >= 10
        # and none of them got the password, in argv or in its environment, under any name
        assert leaks(children) == []
    finally:
        drop_derived(target)
