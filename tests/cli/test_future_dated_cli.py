"""`backstop` and backups dated in the future: `--at` ahead is refused, `latest` and `freshness` ignore none."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from backstop.adapters.s3_store import S3Store
from tests.cli.test_commands import AT, BACKUP_ID, Cli, assert_user_error
from tests.conftest import BUCKET
from tests.handlers import commit_backup

FUTURE_ID = "orders-20990101T000000Z"


def test_backup_at_a_time_in_the_future_exits_1_in_one_sentence_and_writes_nothing(cli: Cli, s3: Any) -> None:
    # when a backup is asked for a mistyped year
    result = cli("backup", "orders", "--at", "2099-01-01T00:00:00Z")

    # then the command fails with one sentence saying the time is in the future, and nothing is stored
    assert_user_error(result, "2099-01-01", "future")
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_show_latest_skips_a_backup_dated_in_the_future(cli: Cli, store: S3Store) -> None:
    # given a real backup, and a manifest dated 2099 written by a machine with a wrong clock
    assert cli("backup", "orders", "--at", AT).exit_code == 0
    commit_backup(store, "orders", datetime(2099, 1, 1, tzinfo=UTC))

    # when the latest backup is shown
    result = cli("show", "orders", "latest", "--json")

    # then it is the real one
    assert result.exit_code == 0, result.output
    assert BACKUP_ID in result.stdout and FUTURE_ID not in result.stdout


def test_freshness_exits_1_when_the_newest_backup_is_dated_in_the_future(cli: Cli, store: S3Store) -> None:
    # given a fresh backup, and a newer one dated 2099
    commit_backup(store, "orders", datetime.now(UTC) - timedelta(hours=1))
    commit_backup(store, "orders", datetime(2099, 1, 1, tzinfo=UTC))

    # when freshness is checked from the command line
    result = cli("freshness", "--json")

    # then the database is not reported fresh, and the command fails
    assert result.exit_code == 1
    assert '"status": "fresh"' not in result.stdout
