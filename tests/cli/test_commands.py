"""The `backstop` command on moto: what each command prints and its exit status, for users and scripts."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from click.testing import CliRunner, Result
from moto.server import ThreadedMotoServer
from rich.console import Console

import backstop.cli.output
from backstop.adapters.s3_store import S3Store
from backstop.cli import main
from backstop.manifest import Manifest
from tests.conftest import BUCKET, REGION, create_orders_db, table_rows
from tests.handlers import commit_backup
from tests.services import corrupt_table, failure_records, rot_object

BACKUP_ID = "orders-20261121T020000Z"
AT = "2026-11-21T02:00:00Z"

Cli = Callable[..., Result]


@pytest.fixture
def config_file(tmp_path: Path, orders_db: Path, work_dir: Path) -> Path:
    path = tmp_path / "backstop.yaml"
    data = {
        "bucket": BUCKET,
        "prefix": "backups",
        "work_dir": str(work_dir),
        "databases": [{"name": "orders", "engine": "sqlite", "path": str(orders_db)}],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def cli(s3: Any, config_file: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `backstop --config <file> ...` in-process against moto; stdout and stderr kept apart."""
    # rich tables wide enough that ids are never wrapped (COLUMNS is read once, when backstop.cli.output is imported)
    monkeypatch.setattr(backstop.cli.output, "out", Console(highlight=False, soft_wrap=True, width=200))

    def run(*args: str, config: Path = config_file) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    return run


@pytest.fixture
def offline_cli(monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `backstop --config <file> ...` for errors caught before AWS: no moto, and any stray request
    would go to a closed local port rather than to a real account."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    def run(*args: str, config: Path) -> Result:
        return CliRunner().invoke(main, ["--config", str(config), *args])

    return run


def assert_user_error(result: Result, *fragments: str) -> None:
    """Exit 1, one `error:` sentence on stderr naming the problem, and no traceback anywhere."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def stored_manifest(s3: Any, backup_id: str = BACKUP_ID) -> Manifest:
    key = f"backups/orders/2026/11/21/{backup_id}.manifest.json"
    return Manifest.from_json(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read(), where=key)


# -- backup ----------------------------------------------------------------------------------------


def test_backup_prints_the_backup_id(cli: Cli, s3: Any) -> None:
    # when a backup is taken for a given time
    result = cli("backup", "orders", "--at", AT)

    # then its id is the whole of stdout, and it is committed
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{BACKUP_ID}\n"
    assert stored_manifest(s3).tables["orders"].rows == 1000


def test_backup_json_prints_the_committed_manifest(cli: Cli, s3: Any) -> None:
    # when a backup is taken with --json
    result = cli("backup", "orders", "--at", AT, "--type", "scheduled", "--json")

    # then stdout is exactly the manifest that was committed (sealed, so it passes its own checksum)
    assert result.exit_code == 0, result.output
    printed = Manifest.from_json(result.stdout.encode(), where="stdout")
    assert printed == stored_manifest(s3)
    assert (printed.backup_id, printed.type, printed.trigger.kind) == (BACKUP_ID, "scheduled", "schedule")


def test_repeating_a_backup_for_the_same_time_says_it_already_existed(cli: Cli, s3: Any) -> None:
    # given a committed backup
    cli("backup", "orders", "--at", AT)

    # when the same time is backed up again
    result = cli("backup", "orders", "--at", AT)

    # then the same id is printed, the user is told, and nothing new was written
    assert result.exit_code == 0
    assert result.stdout == f"{BACKUP_ID}\n"
    assert "already existed" in result.stderr
    listing = s3.list_object_versions(Bucket=BUCKET, Prefix="backups/orders/")
    assert len(listing["Versions"]) == 2  # one artifact, one manifest


def test_a_failed_backup_exits_1_with_an_error_and_commits_nothing(cli: Cli, s3: Any, orders_db: Path) -> None:
    # given a corrupt source
    corrupt_table(orders_db)

    # when it is backed up
    result = cli("backup", "orders", "--at", AT)

    # then the command fails, names the check, and nothing was committed
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: The snapshot of orders fails integrity_check")
    assert result.stdout == ""
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="backups/orders/").get("KeyCount") == 0
    assert [r["error"] for r in failure_records(s3)] == ["IntegrityError"]


def test_a_corrupt_source_is_reported_in_one_line(cli: Cli, orders_db: Path) -> None:
    corrupt_table(orders_db)

    result = cli("backup", "orders", "--at", AT)

    assert_user_error(result, "integrity_check")


# -- list, show, stats -----------------------------------------------------------------------------


def test_list_shows_committed_backups_oldest_first(cli: Cli) -> None:
    # given two backups taken out of order
    cli("backup", "orders", "--at", "2026-11-22T02:00:00Z")
    cli("backup", "orders", "--at", AT)

    # when they are listed
    as_json = cli("list", "orders", "--json")
    as_table = cli("list", "orders")

    # then both appear, oldest first, in JSON and in the table
    assert as_json.exit_code == as_table.exit_code == 0
    assert [m["backup_id"] for m in json.loads(as_json.stdout)] == [BACKUP_ID, "orders-20261122T020000Z"]
    assert as_table.stdout.index(BACKUP_ID) < as_table.stdout.index("orders-20261122T020000Z")


def test_list_of_a_database_without_backups_says_so(cli: Cli) -> None:
    result = cli("list", "orders")

    assert result.exit_code == 0
    assert "No backups of orders yet." in result.stdout


def test_show_prints_the_manifest_of_latest_and_of_an_id(cli: Cli) -> None:
    # given a committed backup
    cli("backup", "orders", "--at", AT)

    # when it is shown as latest and by id
    latest = cli("show", "orders", "latest", "--json")
    by_id = cli("show", "orders", BACKUP_ID)

    # then both describe it
    assert latest.exit_code == by_id.exit_code == 0
    assert json.loads(latest.stdout)["backup_id"] == BACKUP_ID
    assert BACKUP_ID in by_id.stdout
    assert "1000 rows" in by_id.stdout


def test_show_of_a_backup_that_was_never_taken_fails_with_one_sentence(cli: Cli) -> None:
    result = cli("show", "orders", "orders-20200101T000000Z")

    assert_user_error(result, "orders-20200101T000000Z has no manifest")


def test_show_latest_without_any_backup_says_how_to_make_one(cli: Cli) -> None:
    result = cli("show", "orders", "latest")

    assert_user_error(result, "backstop backup orders")


def test_stats_counts_backups_and_failed_runs(cli: Cli, orders_db: Path) -> None:
    # given one committed backup and one failed run
    cli("backup", "orders", "--at", AT)
    corrupt_table(orders_db)
    assert cli("backup", "orders", "--at", "2026-11-22T02:00:00Z").exit_code == 1

    # when stats are asked for
    result = cli("stats", "--json")
    table = cli("stats")

    # then they count one backup and one failure
    assert result.exit_code == table.exit_code == 0
    [row] = json.loads(result.stdout)
    assert (row["database"], row["count"], row["failed"]) == ("orders", 1, 1)
    assert row["total_bytes"] > 0
    assert "orders" in table.stdout


# -- verify and download ---------------------------------------------------------------------------


def test_verify_exits_0_on_an_intact_backup_and_1_on_a_damaged_one(cli: Cli, s3: Any) -> None:
    # given a committed backup
    cli("backup", "orders", "--at", AT)
    ok = cli("verify", "orders")
    ok_json = cli("verify", "orders", BACKUP_ID, "--json")

    # when one byte of its stored object rots
    manifest = stored_manifest(s3)
    data = bytearray(
        s3.get_object(Bucket=BUCKET, Key=manifest.object.key, VersionId=manifest.object.version_id)["Body"].read()
    )
    data[100] ^= 0xFF
    rot_object(manifest.object.key, manifest.object.version_id, bytes(data))
    damaged = cli("verify", "orders")

    # then verify passed before and fails now, naming the reason
    assert ok.exit_code == 0
    assert f"{BACKUP_ID} verified." in ok.stdout
    assert json.loads(ok_json.stdout)["ok"] is True
    assert_user_error(damaged, "the stored bytes were altered")


def test_download_writes_the_stored_bytes_or_the_decompressed_database(
    cli: Cli, s3: Any, tmp_path: Path, orders_db: Path
) -> None:
    # given a committed backup
    cli("backup", "orders", "--at", AT)
    manifest = stored_manifest(s3)

    # when it is downloaded as stored and decompressed
    stored = tmp_path / "orders.sqlite.zst"
    raw = tmp_path / "orders.sqlite"
    first = cli("download", "orders", BACKUP_ID, "--out", str(stored))
    second = cli("download", "orders", "latest", "--out", str(raw), "--decompress")

    # then the stored file matches the manifest's checksum and the decompressed one is the database
    assert first.exit_code == second.exit_code == 0
    assert "checked against its manifest" in first.stderr
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == manifest.object.sha256
    assert hashlib.sha256(raw.read_bytes()).hexdigest() == manifest.raw.sha256
    assert table_rows(raw) == table_rows(orders_db)


def test_a_download_of_a_damaged_backup_fails_and_leaves_no_file(cli: Cli, s3: Any, tmp_path: Path) -> None:
    # given a committed backup whose object was truncated in the bucket
    cli("backup", "orders", "--at", AT)
    manifest = stored_manifest(s3)
    rot_object(manifest.object.key, manifest.object.version_id, b"\x28\xb5\x2f\xfd")
    out = tmp_path / "downloads"
    out.mkdir()

    # when it is downloaded
    result = cli("download", "orders", BACKUP_ID, "--out", str(out / "orders.sqlite.zst"))

    # then the command fails and neither the file nor a partial one is left
    assert_user_error(result, "truncated")
    assert list(out.iterdir()) == []


# -- restore ---------------------------------------------------------------------------------------


def test_restore_with_yes_installs_the_backup_and_keeps_the_old_target(
    cli: Cli, tmp_path: Path, orders_db: Path
) -> None:
    # given a committed backup and an existing target with other data
    cli("backup", "orders", "--at", AT)
    target = create_orders_db(tmp_path / "app.db", rows=5)
    old = table_rows(target)

    # when it is restored with --yes
    result = cli("restore", "orders", "--to", str(target), "--yes", "--json")

    # then the target is the backup, and the old data is kept where the output says
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["backup_id"], report["restored"], report["dry_run"]) == (BACKUP_ID, True, False)
    assert table_rows(target) == table_rows(orders_db)
    assert table_rows(Path(report["pre_restore"])) == old


def test_restore_without_yes_off_a_terminal_refuses_and_touches_nothing(cli: Cli, tmp_path: Path) -> None:
    # given a committed backup and an existing target
    cli("backup", "orders", "--at", AT)
    target = create_orders_db(tmp_path / "app.db", rows=5)
    before = target.read_bytes()

    # when restore runs from a script without --yes
    result = cli("restore", "orders", BACKUP_ID, "--to", str(target))

    # then it refuses with one sentence saying what to do, and the target is unchanged
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "error: Refusing to restore without confirmation: pass --yes" in result.stderr
    assert target.read_bytes() == before
    assert not list(tmp_path.glob("app.db.pre-restore-*"))


def test_restore_dry_run_prints_the_plan_and_changes_nothing(cli: Cli, tmp_path: Path) -> None:
    # given a committed backup and an existing target
    cli("backup", "orders", "--at", AT)
    target = create_orders_db(tmp_path / "app.db", rows=5)
    before = target.read_bytes()

    # when a dry run is requested
    result = cli("restore", "orders", "--to", str(target), "--dry-run")

    # then the plan (with row counts of both sides) is printed, exit 0, and the target is unchanged
    assert result.exit_code == 0, result.output
    assert f"Restore plan: {BACKUP_ID}" in result.stderr
    assert "orders: 5 rows now, 1000 in the backup" in result.stderr
    assert target.read_bytes() == before
    assert not list(tmp_path.glob("app.db.pre-restore-*"))


def test_restore_of_a_damaged_backup_exits_1_and_touches_nothing(cli: Cli, s3: Any, tmp_path: Path) -> None:
    # given a committed backup whose manifest was edited in the bucket without resealing
    cli("backup", "orders", "--at", AT)
    key = f"backups/orders/2026/11/21/{BACKUP_ID}.manifest.json"
    data = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    data["object"]["size"] += 1
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(data).encode())
    target = create_orders_db(tmp_path / "app.db", rows=5)
    before = target.read_bytes()

    # when it is restored with --yes
    result = cli("restore", "orders", "--to", str(target), "--yes")

    # then it fails with the reason and the target is unchanged
    assert_user_error(result, "fails its own checksum")
    assert target.read_bytes() == before


# -- freshness -------------------------------------------------------------------------------------


def stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_freshness_exits_0_when_every_newest_backup_is_recent(cli: Cli) -> None:
    # given a backup an hour old (stale_after defaults to 26h)
    cli("backup", "orders", "--at", stamp(datetime.now(UTC) - timedelta(hours=1)))

    # when freshness is checked
    result = cli("freshness", "--json")

    # then it is fresh and the exit status is 0
    assert result.exit_code == 0, result.output
    [entry] = json.loads(result.stdout)
    assert entry["status"] == "fresh"


def test_freshness_exits_1_when_a_database_has_no_backup(cli: Cli, tmp_path: Path, orders_db: Path) -> None:
    # given two databases, only one of which was ever backed up
    config = tmp_path / "two.yaml"
    ledger = create_orders_db(tmp_path / "ledger.db", rows=5)
    config.write_text(
        yaml.safe_dump(
            {
                "bucket": BUCKET,
                "work_dir": str(tmp_path / "work"),
                "databases": [
                    {"name": "orders", "engine": "sqlite", "path": str(orders_db)},
                    {"name": "ledger", "engine": "sqlite", "path": str(ledger)},
                ],
            }
        )
    )
    cli("backup", "orders", config=config)

    # when freshness is checked
    result = cli("freshness", config=config)

    # then it exits 1 naming only the database without a backup
    assert result.exit_code == 1
    assert "ledger" in result.stdout and "missing" in result.stdout
    assert "error: Backups need a look: ledger (no backup)." in result.stderr


def test_freshness_exits_1_when_the_newest_backup_is_older_than_stale_after(cli: Cli) -> None:
    # given a backup 30 hours old and the default stale_after of 26h
    cli("backup", "orders", "--at", stamp(datetime.now(UTC) - timedelta(hours=30)))

    # when freshness is checked
    result = cli("freshness", "--json")

    # then it is stale and the exit status is 1
    assert result.exit_code == 1
    assert json.loads(result.stdout)[0]["status"] == "stale"
    assert "error: Backups need a look: orders (stale)." in result.stderr


def test_freshness_says_clock_skew_for_a_backup_dated_in_the_future(cli: Cli, s3: Any) -> None:
    # given a fresh backup, and a manifest dated next year written straight to the bucket (a wrong clock)
    cli("backup", "orders")
    commit_backup(S3Store(s3, bucket=BUCKET, prefix="backups"), "orders", datetime.now(UTC) + timedelta(days=365))

    # when freshness is checked
    result = cli("freshness")

    # then it exits 1 and says a clock is wrong, not that the database is stale
    assert result.exit_code == 1
    assert "future-dated" in result.stdout
    assert "error: Backups need a look: orders (newest backup dated in the future: a clock is wrong)." in (
        result.stderr.replace("\n", " ")
    )


# -- configuration and user errors -----------------------------------------------------------------

VALID_HEAD = "bucket: backstop-test\ndatabases:\n  - name: orders\n    engine: sqlite\n    path: /x.db\n"

# (file text, line of the mistake, what the message must name)
BAD_CONFIGS = {
    "bad-duration": (VALID_HEAD + "    stale_after: soon\n", 6, "databases[0].stale_after: 'soon' is not a duration"),
    "bad-schedule": (VALID_HEAD + "    schedule: every night\n", 6, "databases[0].schedule"),
    "bad-name": (VALID_HEAD.replace("name: orders", "name: Orders DB"), 3, "databases[0].name"),
    "unknown-engine": (
        VALID_HEAD.replace("engine: sqlite", "engine: oracle"),
        3,
        "engine must be one of files, mysql, postgres, sqlite",
    ),
    "unknown-field": (
        "bucket: backstop-test\nbukcet: typo\n" + VALID_HEAD[len("bucket: backstop-test\n") :],
        2,
        "bukcet",
    ),
    "missing-path": (VALID_HEAD.replace("    path: /x.db\n", ""), 3, "databases[0].path: required field is missing"),
    "malformed-yaml": ("bucket: backstop-test\ndatabases:\n  - name: [orders\n", 4, "expected ','"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_a_bad_config_fails_with_one_sentence_naming_the_file_and_line(
    case: str, offline_cli: Cli, tmp_path: Path
) -> None:
    # given a configuration file with one mistake
    text, line, fragment = BAD_CONFIGS[case]
    config = tmp_path / "broken.yaml"
    config.write_text(text)

    # when any command runs with it
    result = offline_cli("list", "orders", config=config)

    # then it exits 1 with one sentence pointing at the file and line
    assert_user_error(result, f"{config}:{line}", fragment)


def test_a_bad_database_entry_is_the_only_problem_reported(offline_cli: Cli, tmp_path: Path) -> None:
    # given a configuration whose only database has a bad duration
    config = tmp_path / "broken.yaml"
    config.write_text(VALID_HEAD + "    stale_after: soon\n")

    # when a command runs, then only that mistake is reported
    result = offline_cli("list", "orders", config=config)
    assert_user_error(result, "stale_after")
    assert "at least 1 item" not in result.stderr


def test_a_bad_database_name_in_the_config_shows_the_allowed_pattern(offline_cli: Cli, tmp_path: Path) -> None:
    # given a configuration with a database name outside the allow-list
    config = tmp_path / "broken.yaml"
    config.write_text(VALID_HEAD.replace("name: orders", "name: Orders DB"))

    # when a command runs, then the message shows the allowed characters as written in the code
    result = offline_cli("list", "orders", config=config)
    assert_user_error(result, "[a-z0-9][a-z0-9_-]{0,62}")


def test_a_missing_config_file_says_how_to_point_at_one(offline_cli: Cli, tmp_path: Path) -> None:
    result = offline_cli("list", "orders", config=tmp_path / "nope.yaml")

    assert_user_error(result, "not found", "--config")


def test_an_unknown_database_names_the_known_ones(offline_cli: Cli, config_file: Path) -> None:
    result = offline_cli("backup", "ledger", config=config_file)

    assert_user_error(result, "No database named 'ledger'", "known: orders")


@pytest.mark.parametrize("folder", ["[prod]", "a[/b]"])
def test_an_error_naming_a_path_with_brackets_shows_it_verbatim(cli: Cli, tmp_path: Path, folder: str) -> None:
    # given a configuration whose database file lives under a folder with brackets in its name, and is missing
    config = tmp_path / "brackets.yaml"
    missing = tmp_path / folder / "app.db"
    config.write_text(
        yaml.safe_dump({"bucket": BUCKET, "databases": [{"name": "orders", "engine": "sqlite", "path": str(missing)}]})
    )

    # when it is backed up
    result = cli("backup", "orders", "--at", AT, config=config)

    # then the error names the path exactly as configured
    assert_user_error(result, str(missing))


def test_a_missing_work_dir_is_one_sentence_not_a_traceback(cli: Cli, tmp_path: Path, orders_db: Path) -> None:
    # given a configuration whose work_dir does not exist
    config = tmp_path / "no-work-dir.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "bucket": BUCKET,
                "work_dir": str(tmp_path / "not-mounted"),
                "databases": [{"name": "orders", "engine": "sqlite", "path": str(orders_db)}],
            }
        )
    )

    # when a backup runs, then it fails with one sentence naming the directory
    result = cli("backup", "orders", "--at", AT, config=config)
    assert_user_error(result, f"The work directory {tmp_path / 'not-mounted'} cannot hold a run")


def test_sqlite_source_missing_is_one_sentence(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "missing.yaml"
    missing = tmp_path / "gone.db"
    config.write_text(
        yaml.safe_dump({"bucket": BUCKET, "databases": [{"name": "orders", "engine": "sqlite", "path": str(missing)}]})
    )

    result = cli("backup", "orders", "--at", AT, config=config)

    assert_user_error(result, f"SQLite database {str(missing)!r} does not exist")


def test_help_works_without_a_config_or_aws(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["--config", str(tmp_path / "absent.yaml"), "restore", "--help"])

    assert result.exit_code == 0
    assert "--dry-run" in result.stdout


# -- the installed command, in its own process -----------------------------------------------------


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server (its own threads, real HTTP) for commands run as a subprocess; yields its URL."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def moto_endpoint(moto_server: str) -> str:
    """The server with the versioned test bucket. Made per test: the server shares moto's in-process
    state, which every `mock_aws` of the other tests resets."""
    s3 = boto3.client(
        "s3", endpoint_url=moto_server, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    if BUCKET not in [b["Name"] for b in s3.list_buckets().get("Buckets", [])]:
        s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return moto_server


def run_command(endpoint: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m backstop.cli ...` in a fresh process, as a user or cron would run it."""
    return subprocess.run(
        [sys.executable, "-m", "backstop.cli", *args],
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_backup_run_as_a_command_prints_only_its_id(moto_endpoint: str, config_file: Path) -> None:
    # when the installed command takes a backup in its own process
    result = run_command(moto_endpoint, "--config", str(config_file), "backup", "orders", "--at", AT)

    # then stdout is the id and stderr is empty (the control for the test below)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{BACKUP_ID}\n", "")


def test_a_failed_backup_run_as_a_command_prints_one_sentence(moto_endpoint: str, tmp_path: Path) -> None:
    # given a configuration whose database file is missing, and the command run the way a user runs it
    config = tmp_path / "backstop.yaml"
    missing = tmp_path / "gone.db"
    config.write_text(
        yaml.safe_dump({"bucket": BUCKET, "databases": [{"name": "orders", "engine": "sqlite", "path": str(missing)}]})
    )

    # when the backup fails
    result = run_command(moto_endpoint, "--config", str(config), "backup", "orders")

    # then stderr is the one sentence, once
    assert result.returncode == 1
    assert result.stderr == f"error: SQLite database {str(missing)!r} does not exist or is not a file.\n"
