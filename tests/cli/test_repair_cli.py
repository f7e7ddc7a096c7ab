"""`backstop verify` on an overwritten key, and `backstop repair`: what they print and their exit status."""

from __future__ import annotations

import json
from typing import Any

from backstop.manifest import Manifest
from tests.cli.test_commands import AT, BACKUP_ID, Cli, assert_user_error, stored_manifest
from tests.conftest import BUCKET


def committed(cli: Cli, s3: Any) -> Manifest:
    """Back up orders at AT and return its manifest as stored."""
    assert cli("backup", "orders", "--at", AT).exit_code == 0
    return stored_manifest(s3)


def test_verify_exits_1_naming_both_versions_and_repair_makes_it_pass_again(cli: Cli, s3: Any) -> None:
    # given a committed backup whose artifact key was overwritten by a stray write
    manifest = committed(cli, s3)
    genuine = s3.get_object(Bucket=BUCKET, Key=manifest.object.key)["Body"].read()
    intruder = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=b"evil")["VersionId"]

    # when it is verified, repaired, and verified again
    refused = cli("verify", "orders", BACKUP_ID)
    repaired = cli("repair", "orders", BACKUP_ID)
    verified = cli("verify", "orders", BACKUP_ID)

    # then verify said what is wrong and how to fix it, in one sentence with exit 1
    assert_user_error(
        refused,
        f"is {intruder}, not the backed-up {manifest.object.version_id}",
        f"run `backstop repair orders {BACKUP_ID}`",
    )
    # and repair said what it did, and left the genuine bytes current under the pinned version
    assert repaired.exit_code == 0, repaired.output
    quarantined = f"backups/_quarantine/{manifest.object.key.removeprefix('backups/')}/{intruder}"
    assert quarantined in repaired.stdout
    assert f"{BACKUP_ID} repaired" in repaired.stdout
    current = s3.get_object(Bucket=BUCKET, Key=manifest.object.key)
    assert (current["Body"].read(), current["VersionId"]) == (genuine, manifest.object.version_id)
    # and verify passes again
    assert verified.exit_code == 0, verified.output
    assert f"ok current version: {manifest.object.key} serves {manifest.object.version_id}" in verified.stdout


def test_repair_of_an_intact_backup_says_nothing_to_repair_and_exits_0(cli: Cli, s3: Any) -> None:
    # given an untouched backup
    committed(cli, s3)

    # when it is repaired, in words and in JSON
    result = cli("repair", "orders", BACKUP_ID)
    as_json = cli("repair", "orders", BACKUP_ID, "--json")

    # then both say there was nothing to do
    assert result.exit_code == 0, result.output
    assert f"Nothing to repair: {BACKUP_ID}" in result.stdout
    assert json.loads(as_json.stdout) == {
        "backup_id": BACKUP_ID,
        "repaired": False,
        "quarantined": [],
        "removed": [],
        "retagged": [],
    }


def test_repair_of_an_unknown_database_or_backup_fails_with_one_sentence(cli: Cli, s3: Any) -> None:
    # given one committed backup of orders
    committed(cli, s3)

    # when repair is asked for a database that is not configured, a backup never taken, and a bad id
    unknown_database = cli("repair", "ledger", "ledger-20261121T020000Z")
    never_taken = cli("repair", "orders", "orders-20261120T020000Z")
    bad_id = cli("repair", "orders", "yesterday")

    # then each fails with exit 1 and one sentence
    assert_user_error(unknown_database, "No database named 'ledger'", "known: orders")
    assert_user_error(never_taken, "orders-20261120T020000Z", "has no manifest")
    assert_user_error(bad_id, "Invalid backup id")


def test_sweep_exits_1_and_names_an_overwritten_backup(cli: Cli, s3: Any) -> None:
    # given a committed backup whose key got a delete marker
    manifest = committed(cli, s3)
    marker = s3.delete_object(Bucket=BUCKET, Key=manifest.object.key)["VersionId"]

    # when the sweep runs, in words and in JSON
    result = cli("sweep")
    as_json = cli("sweep", "--json")

    # then both exit 1, and name the backup, the delete marker and the command that repairs it
    assert (result.exit_code, as_json.exit_code) == (1, 1)
    assert "1 overwritten" in result.stdout
    assert f"overwritten {BACKUP_ID}: {BACKUP_ID}: the current version of {manifest.object.key} is the delete " in (
        result.stdout
    )
    assert f"the delete marker {marker}" in result.stdout
    assert json.loads(as_json.stdout)["overwritten"] == [BACKUP_ID]
