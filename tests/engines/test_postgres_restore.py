"""Restores into a real PostgreSQL server: fresh database, validation, swap by renames, and every failure path."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
import zstandard
from click.testing import CliRunner

from backstop.adapters.s3_store import S3Store
from backstop.cli import main
from backstop.engines.postgres import PostgresEngine
from backstop.errors import ChecksumMismatchError, IntegrityError, RestoreError, ValidationError
from backstop.manifest import Manifest
from backstop.services.artifacts import fetch_artifact
from backstop.services.server_restore import ServerRestoreService, _PostgresTarget
from tests.conftest import BUCKET
from tests.engines.test_postgres_engine import (
    ADMIN,
    HOST,
    NAME,
    PORT,
    admin,
    connect,
    create_shop,
    new_database,  # noqa: F401 - the fixture
    postgres_entry,
    table_checksums,
)
from tests.services import at, leftovers, replace_artifact, rot_object, run_backup, stored_bytes

pytestmark = pytest.mark.xdist_group("postgres")


def url(dbname: str) -> str:
    return f"postgresql://{ADMIN}@{HOST}:{PORT}/{dbname}"


def databases_like(prefix: str) -> list[str]:
    with admin() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname", (prefix,)
        ).fetchall()
    return [str(r[0]) for r in rows]


def drop_derived(target: str) -> None:
    with admin() as conn:
        for name in databases_like(f"{target}_"):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def backed_up(
    new_database: Callable[[], str],  # noqa: F811
    make_config: Callable[..., Any],
    store: S3Store,
) -> tuple[str, Manifest, Callable[..., Any]]:
    """A source database with the shop schema and its committed backup; returns (source, manifest, make_config)."""
    source = new_database()
    create_shop(source, orders=3_000)
    manifest = run_backup(make_config(postgres_entry(source)), store, at(21), database=NAME).manifest
    return source, manifest, make_config


def other_data(dbname: str) -> None:
    with connect(dbname) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes SELECT i, 'old ' || i FROM generate_series(1, 50) AS i")


def yes(_plan: object) -> bool:
    return True


def test_restore_latest_replaces_an_existing_target_and_keeps_the_old_one(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
) -> None:
    # given a backup, and an existing target holding other data with a session connected to it
    source, manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    old = table_checksums(target)
    config = make_config(postgres_entry(source))
    plans: list[Any] = []
    idle = connect(target)
    try:
        # when latest is restored into it
        outcome = ServerRestoreService(config, store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=lambda plan: plans.append(plan) or True
        )
    finally:
        idle.close()
        pre = databases_like(f"{target}_pre_restore_")
    try:
        # then the target equals the backup, the old data is kept under the reported name, nothing else is left
        assert outcome.restored
        assert plans[0].target_exists and plans[0].current == {"public.notes": 50}
        # at least the application's session (background workers such as autovacuum may add to it)
        assert plans[0].sessions >= 1
        assert table_checksums(target) == table_checksums(source)
        assert {n: s.rows for n, s in manifest.tables.items()} == {
            n: c for n, (c, _) in table_checksums(target).items()
        }
        assert pre == [outcome.pre_restore]
        assert table_checksums(pre[0]) == old
        assert databases_like(f"{target}_restore_") == []
        assert leftovers(work_dir) == []
    finally:
        drop_derived(target)


def test_restore_into_a_database_that_does_not_exist_creates_it(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store
) -> None:
    # given a backup and a target name that does not exist on the server
    source, manifest, make_config = backed_up
    target = f"{source}_new"
    try:
        # when it is restored there
        outcome = ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, manifest.backup_id, url(target), dry_run=False, confirm=yes
        )

        # then the target exists with the backup's data and there is no pre-restore database
        assert outcome.restored and outcome.pre_restore is None
        assert table_checksums(target) == table_checksums(source)
        assert databases_like(f"{target}_") == []
    finally:
        drop_derived(target)
        with admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{target}" WITH (FORCE)')


def test_a_dry_run_shows_the_plan_and_creates_nothing(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
) -> None:
    # given an existing target
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)

    # when a dry run is asked for
    outcome = ServerRestoreService(make_config(postgres_entry(source)), store).restore(
        NAME, "latest", url(target), dry_run=True, confirm=lambda _p: pytest.fail("a dry run asks nothing")
    )

    # then the plan is reported and nothing was created or changed
    assert not outcome.restored
    assert outcome.plan.current == {"public.notes": 50}
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []


def test_a_failing_validation_query_leaves_the_target_unchanged(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
) -> None:
    # given a validation query the restored data fails
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    queries = ["SELECT count(*) FROM schema_migrations", "SELECT count(*) > 5 FROM schema_migrations"]
    config = make_config(postgres_entry(source, validation_queries=queries))

    # when it is restored
    with pytest.raises(ValidationError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

    # then the failure names the query, the target is as it was and no fresh database is left
    assert "Validation query 2" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []


def fake_pg_restore(bin_dir: Path) -> None:
    """A pg_restore on PATH that checks archives normally but restores only the schema, then fails."""
    real = subprocess.run(["bash", "-c", "command -v pg_restore"], capture_output=True, text=True, check=True)
    bin_dir.mkdir()
    script = bin_dir / "pg_restore"
    script.write_text(
        f"""#!/bin/bash
case "$*" in *--dbname=*) ;; *) exec {real.stdout.strip()} "$@";; esac
{real.stdout.strip()} --section=pre-data "$@" || exit 2
echo 'pg_restore: error: injected failure' >&2
exit 1
"""
    )
    script.chmod(0o755)


def test_a_pg_restore_failing_halfway_leaves_the_target_unchanged(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a pg_restore that creates the schema and then fails
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    fake_pg_restore(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    # when it is restored
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then pg_restore's failure is reported, the target is as it was and nothing is left behind
    assert "injected failure" in str(failure.value)
    assert "exited with status 1" in str(failure.value)
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ("postgresql://postgres:hunter2-secret@127.0.0.1:5432/x", "passwords never go on the command line"),
        ("postgresql://:hunter2-secret@127.0.0.1/x", "passwords never go on the command line"),
        ("postgresql://127.0.0.1:5432/", "plain database name"),
        ("postgresql://127.0.0.1:99999/x", "port"),
        ("postgresql://127.0.0.1/x?sslmode=disable", "no parameters"),
        ("postgresql://127.0.0.1/postgres", "server's own database"),
    ],
)
def test_bad_urls_are_refused_in_one_sentence_without_the_password(
    bad: str, fragment: str, make_config: Callable[..., Any], store: S3Store
) -> None:
    # given a config with a postgres database
    config = make_config(postgres_entry("anything"))

    # when a bad URL is given
    with pytest.raises(RestoreError) as failure:
        ServerRestoreService(config, store).restore(NAME, "latest", bad, dry_run=False, confirm=yes)

    # then it is refused, naming the problem and never echoing the password
    assert fragment in str(failure.value)
    assert "hunter2" not in str(failure.value)


def test_cli_restore_to_a_postgres_url_with_yes_restores(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    tmp_path: Path,
    work_dir: Path,
) -> None:
    # given a config file naming the backed-up database, and an existing target
    source, manifest, _make_config = backed_up
    target = new_database()
    other_data(target)
    config = tmp_path / "backstop.yaml"
    config.write_text(
        yaml.safe_dump(
            {"bucket": BUCKET, "prefix": "backups", "work_dir": str(work_dir), "databases": [postgres_entry(source)]}
        )
    )
    try:
        # when `backstop restore pg latest --to postgresql://... --yes` runs
        result = CliRunner().invoke(
            main, ["--config", str(config), "restore", NAME, "latest", "--to", url(target), "--yes"]
        )

        # then it exits 0, the target holds the backup and the old database is named
        assert result.exit_code == 0, result.output
        assert table_checksums(target) == table_checksums(source)
        assert f"{target}_pre_restore_" in result.stdout
        assert manifest.backup_id in result.stdout
    finally:
        drop_derived(target)


def test_cli_refuses_a_url_with_a_password_without_echoing_it(
    backed_up: tuple[str, Manifest, Callable[..., Any]], tmp_path: Path, work_dir: Path
) -> None:
    source = backed_up[0]
    config = tmp_path / "backstop.yaml"
    config.write_text(
        yaml.safe_dump(
            {"bucket": BUCKET, "prefix": "backups", "work_dir": str(work_dir), "databases": [postgres_entry(source)]}
        )
    )
    result = CliRunner().invoke(
        main, ["--config", str(config), "restore", NAME, "--to", f"postgresql://postgres:s3cr3tpw@{HOST}/x", "--yes"]
    )
    assert result.exit_code == 1
    assert "passwords never go on the command line" in result.stderr
    assert "s3cr3tpw" not in result.output + result.stderr


# -- the archive checked while it is fetched -------------------------------------------------------


def pg_restore_children() -> list[int]:
    """pg_restore processes started by this test process that still exist (running or not reaped)."""
    found = []
    for children in Path("/proc/self/task").glob("*/children"):
        for pid in children.read_text().split():
            with contextlib.suppress(OSError):  # it ended meanwhile
                if Path(f"/proc/{pid}/comm").read_text().strip() == "pg_restore":
                    found.append(int(pid))
    return found


def test_checking_while_fetching_reads_the_whole_archive_and_agrees_with_the_check_of_the_file(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store, tmp_path: Path
) -> None:
    # given a committed backup
    source, manifest, make_config = backed_up
    engine = PostgresEngine(make_config(postgres_entry(source)).database(NAME))
    raw = tmp_path / "restore.pgdump"

    # when it is fetched with the pg_restore checks reading the stream as it is written
    with engine.artifact_check(manifest, tmp_path) as check:
        fetch_artifact(store, manifest, raw, tee=check.feed)

    # then the checks passed with the manifest's TOC, exactly as the check of the finished file does
    assert check.inspection is not None and check.inspection.integrity.passed
    assert check.inspection.stats == {"toc_entries": manifest.source["toc_entries"]}
    assert engine.inspect_artifact(raw, manifest, tmp_path) == check.inspection
    assert pg_restore_children() == []


def test_checking_while_fetching_fails_a_truncated_archive_under_a_resealed_manifest(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store, s3: Any, tmp_path: Path
) -> None:
    # given a backup whose artifact was replaced by a truncated archive under a consistent, sealed manifest
    source, manifest, make_config = backed_up
    fetch_artifact(store, manifest, tmp_path / "good.pgdump")
    truncated = (tmp_path / "good.pgdump").read_bytes()[:-20_000]
    forged = replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(truncated), raw=truncated)
    engine = PostgresEngine(make_config(postgres_entry(source)).database(NAME))

    # when it is fetched and checked
    with pytest.raises(IntegrityError) as failure, engine.artifact_check(forged, tmp_path) as check:
        fetch_artifact(store, forged, tmp_path / "restore.pgdump", tee=check.feed)

    # then pg_restore's full read names the failure (as the check of the file does), and none is left running
    assert "fails pg_restore --file=/dev/null" in str(failure.value)
    with pytest.raises(IntegrityError) as of_the_file:
        engine.inspect_artifact(tmp_path / "restore.pgdump", forged, tmp_path)
    assert str(of_the_file.value).split(":")[0] == str(failure.value).split(":")[0]
    assert pg_restore_children() == []


def test_a_checksum_mismatch_while_checking_is_named_as_such_and_stops_pg_restore(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store, s3: Any, tmp_path: Path
) -> None:
    # given a backup whose stored bytes rotted in place (same size, same version)
    source, manifest, make_config = backed_up
    rotten = bytearray(stored_bytes(s3, manifest))
    rotten[len(rotten) // 2] ^= 0xFF
    rot_object(manifest.object.key, manifest.object.version_id, bytes(rotten))
    engine = PostgresEngine(make_config(postgres_entry(source)).database(NAME))

    # when it is fetched and checked
    with pytest.raises(ChecksumMismatchError) as failure, engine.artifact_check(manifest, tmp_path) as check:
        fetch_artifact(store, manifest, tmp_path / "restore.pgdump", tee=check.feed)

    # then the checksum is what fails (not pg_restore's read of the broken stream), and pg_restore is stopped
    assert "the stored bytes were altered" in str(failure.value)
    assert check.inspection is None
    assert pg_restore_children() == []


def test_a_fetch_whose_tee_fails_raises_that_failure(
    backed_up: tuple[str, Manifest, Callable[..., Any]], store: S3Store, tmp_path: Path
) -> None:
    # given a reader of the fetched stream that breaks on the first bytes it gets
    _source, manifest, _make_config = backed_up

    def breaks(data: bytes) -> None:
        raise RuntimeError(f"reader broke after {len(data)} bytes")

    # when the artifact is fetched into it, then the failure reaches the caller instead of a short stream
    with pytest.raises(RuntimeError, match="reader broke"):
        fetch_artifact(store, manifest, tmp_path / "restore.pgdump", tee=breaks)


# -- the archive loaded while it is checked: nothing counts until every check passed ----------------


def assert_untouched(target: str, before: dict[str, Any], work_dir: Path) -> None:
    """The target holds what it held, no fresh or kept database is left, nor any file or pg_restore process."""
    assert table_checksums(target) == before
    assert databases_like(f"{target}_") == []
    assert leftovers(work_dir) == []
    assert pg_restore_children() == []


def test_a_checksum_mismatch_of_the_stored_object_leaves_the_target_untouched(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    s3: Any,
    work_dir: Path,
) -> None:
    # given an existing target, and a backup whose stored bytes rotted in place (same size, same version)
    source, manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    rotten = bytearray(stored_bytes(s3, manifest))
    rotten[len(rotten) // 2] ^= 0xFF
    rot_object(manifest.object.key, manifest.object.version_id, bytes(rotten))

    # when it is restored
    with pytest.raises(ChecksumMismatchError) as failure:
        ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the checksum is what fails, and the target is as it was with nothing left behind
    assert "the stored bytes were altered" in str(failure.value)
    assert_untouched(target, before, work_dir)


def test_a_local_copy_altered_after_its_check_fails_the_load_and_leaves_the_target_untouched(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given an existing target, and a disk that alters the downloaded copy once it was checked (its SHA-256,
    # and the table of contents the restore reads before it creates anything), just before the load
    source, _manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    load = _PostgresTarget.load

    def rot_then_load(self: _PostgresTarget, artifact: Path, dbname: str, run_dir: Path) -> None:
        stored = bytearray(artifact.read_bytes())
        stored[len(stored) // 2] ^= 0xFF
        artifact.write_bytes(bytes(stored))
        load(self, artifact, dbname, run_dir)

    monkeypatch.setattr(_PostgresTarget, "load", rot_then_load)

    # when it is restored (the mismatch can only be found while the fresh database is loaded)
    with pytest.raises(ChecksumMismatchError) as failure:
        ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the checksum is what fails, the fresh database is dropped and the target is as it was
    assert "the stored bytes were altered" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert_untouched(target, before, work_dir)


def test_a_raw_stream_differing_from_the_manifest_is_never_swapped_in_even_when_it_loads(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    s3: Any,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    # given a sound archive under a sealed manifest that records another raw stream of the same size
    source, manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    fetch_artifact(store, manifest, tmp_path / "good.pgdump")
    other = bytearray((tmp_path / "good.pgdump").read_bytes())
    other[-1] ^= 0xFF
    replace_artifact(s3, store, manifest, stored_bytes(s3, manifest), raw=bytes(other))

    # when it is restored (pg_restore loads it completely)
    with pytest.raises(IntegrityError) as failure:
        ServerRestoreService(make_config(postgres_entry(source)), store).restore(
            NAME, "latest", url(target), dry_run=False, confirm=yes
        )

    # then the raw checksum fails the restore, and the target is as it was with nothing left behind
    assert "but the manifest records" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert_untouched(target, before, work_dir)


def test_a_truncated_archive_under_a_resealed_manifest_fails_the_load_and_leaves_the_target_untouched(
    backed_up: tuple[str, Manifest, Callable[..., Any]],
    new_database: Callable[[], str],  # noqa: F811
    store: S3Store,
    s3: Any,
    work_dir: Path,
    tmp_path: Path,
) -> None:
    # given a backup whose artifact was replaced by a truncated archive under a consistent, sealed manifest
    source, manifest, make_config = backed_up
    target = new_database()
    other_data(target)
    before = table_checksums(target)
    fetch_artifact(store, manifest, tmp_path / "good.pgdump")
    truncated = (tmp_path / "good.pgdump").read_bytes()[:-20_000]
    replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(truncated), raw=truncated)
    service = ServerRestoreService(make_config(postgres_entry(source)), store)

    # when a dry run and a restore are asked for
    with pytest.raises(IntegrityError) as dry_run:
        service.restore(NAME, "latest", url(target), dry_run=True, confirm=yes)
    with pytest.raises(IntegrityError) as failure:
        service.restore(NAME, "latest", url(target), dry_run=False, confirm=yes)

    # then both name pg_restore's full read (the check, not the restore it stopped), and nothing changed
    assert "fails pg_restore --file=/dev/null" in str(dry_run.value)
    assert "fails pg_restore --file=/dev/null" in str(failure.value)
    assert "was not touched" in str(failure.value)
    assert_untouched(target, before, work_dir)
