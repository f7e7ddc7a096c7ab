"""`backstop --bucket <replica> ...`: real SQLite backups, replicated into a bucket in another region."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from backstop.adapters.s3_store import S3Store
from tests.cli.test_commands import AT, BACKUP_ID, Cli, assert_user_error, stamp, stored_manifest
from tests.conftest import BUCKET, create_orders_db, table_rows
from tests.handlers import AlertInbox
from tests.replication import REPLICA, REPLICA_REGION, create_replica_bucket, replicate
from tests.services import rot_object, write_manifest

LATER_ID = "orders-20261122T020000Z"
LATER = "2026-11-22T02:00:00Z"


@pytest.fixture
def replica_s3(s3: Any) -> Any:
    """A client of the replica's region, with the empty versioned replica bucket there."""
    return create_replica_bucket()


@pytest.fixture
def replica_config(tmp_path: Path, orders_db: Path, work_dir: Path, replica_s3: Any) -> Path:
    """backstop.yaml of the vault with its replica (storage.replica) in another region."""
    path = tmp_path / "replicated.yaml"
    data = {
        "bucket": BUCKET,
        "prefix": "backups",
        "work_dir": str(work_dir),
        "storage": {"replica": {"bucket": REPLICA, "region": REPLICA_REGION}},
        "databases": [{"name": "orders", "engine": "sqlite", "path": str(orders_db)}],
    }
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def on_vault(cli: Cli, replica_config: Path) -> Cli:
    """`backstop --config <replicated.yaml> ...` (the vault)."""

    def run(*args: str) -> Any:
        return cli(*args, config=replica_config)

    return run


@pytest.fixture
def on_replica(cli: Cli, replica_config: Path) -> Cli:
    """`backstop --config <replicated.yaml> --bucket <replica> ...`."""

    def run(*args: str) -> Any:
        return cli("--bucket", REPLICA, *args, config=replica_config)

    return run


def held(client: Any, bucket: str) -> list[tuple[str, str, bool]]:
    """Every version and delete marker in ``bucket`` (key, version id, is a marker), and no upload open."""
    listing = client.list_object_versions(Bucket=bucket)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")
    found = [(v["Key"], v["VersionId"], False) for v in listing.get("Versions", [])]
    return sorted(found + [(m["Key"], m["VersionId"], True) for m in listing.get("DeleteMarkers", [])])


def lose_vault(s3: Any) -> None:
    """The vault's region or account is gone: every version of the vault deleted, then the bucket itself."""
    for key, version_id, _ in held(s3, BUCKET):
        s3.delete_object(Bucket=BUCKET, Key=key, VersionId=version_id)
    s3.delete_bucket(Bucket=BUCKET)


def replicated_backup(on_vault: Cli, *when: str) -> None:
    """Backups of orders taken on the vault at each time of ``when``, then replicated."""
    for at in when:
        assert on_vault("backup", "orders", "--at", at).exit_code == 0
    assert replicate(BUCKET, REPLICA) > 0


# -- reading the replica ---------------------------------------------------------------------------


def test_list_on_the_replica_shows_the_same_backups_as_the_vault(on_vault: Cli, on_replica: Cli) -> None:
    # given two backups, replicated
    replicated_backup(on_vault, AT, LATER)

    # when both buckets are listed
    vault = on_vault("list", "orders", "--json")
    replica = on_replica("list", "orders", "--json")

    # then the replica lists the same backups with the same manifests, naming the vault's bucket
    assert vault.exit_code == replica.exit_code == 0, replica.output
    assert [m["backup_id"] for m in json.loads(replica.stdout)] == [BACKUP_ID, LATER_ID]
    assert json.loads(replica.stdout) == json.loads(vault.stdout)
    assert {m["object"]["bucket"] for m in json.loads(replica.stdout)} == {BUCKET}


def test_a_backup_not_yet_replicated_is_not_on_the_replica(on_vault: Cli, on_replica: Cli) -> None:
    # given a replicated backup, and a later one the replica has not received yet
    replicated_backup(on_vault, AT)
    assert on_vault("backup", "orders", "--at", LATER).exit_code == 0

    # when the replica is listed, shown and counted
    listed = on_replica("list", "orders", "--json")
    latest = on_replica("show", "orders", "latest", "--json")
    stats = on_replica("stats", "--json")

    # then it holds only the replicated backup, while the vault has both
    assert [m["backup_id"] for m in json.loads(listed.stdout)] == [BACKUP_ID]
    assert json.loads(latest.stdout)["backup_id"] == BACKUP_ID
    assert json.loads(stats.stdout)[0]["count"] == 1
    assert [m["backup_id"] for m in json.loads(on_vault("list", "orders", "--json").stdout)] == [BACKUP_ID, LATER_ID]


def test_verify_passes_from_the_replica_when_the_vault_copy_is_damaged(s3: Any, on_vault: Cli, on_replica: Cli) -> None:
    # given a replicated backup whose bytes then rot in the vault only
    replicated_backup(on_vault, AT)
    manifest = stored_manifest(s3)
    rot_object(manifest.object.key, manifest.object.version_id, b"\x28\xb5\x2f\xfd" + b"\x00" * manifest.object.size)

    # when it is verified in both buckets
    vault = on_vault("verify", "orders")
    replica = on_replica("verify", "orders", BACKUP_ID, "--json")

    # then the replica's copy is intact and checked end to end, the vault's is not
    assert replica.exit_code == 0, replica.output
    report = json.loads(replica.stdout)
    assert (report["backup_id"], report["ok"]) == (BACKUP_ID, True)
    assert report["checks"]["stored SHA-256"] == manifest.object.sha256[:16]
    assert vault.exit_code == 1


def test_restore_from_the_replica_gives_the_rows_of_the_backup_when_the_vault_is_lost(
    s3: Any, replica_s3: Any, on_vault: Cli, on_replica: Cli, orders_db: Path, tmp_path: Path
) -> None:
    # given a replicated backup, a vault that is gone, and a target with other data
    replicated_backup(on_vault, AT)
    backed_up = table_rows(orders_db)
    lose_vault(s3)
    target = create_orders_db(tmp_path / "app.db", rows=5)
    old = table_rows(target)
    before = held(replica_s3, REPLICA)

    # when latest is restored from the replica
    result = on_replica("restore", "orders", "--to", str(target), "--yes", "--json")

    # then the target holds the backup's rows, the old data is kept locally, and the replica is untouched
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["backup_id"], report["restored"]) == (BACKUP_ID, True)
    assert table_rows(target) == backed_up
    assert table_rows(Path(report["pre_restore"])) == old
    assert held(replica_s3, REPLICA) == before


def test_download_from_the_replica_writes_the_checked_bytes_when_the_vault_is_lost(
    s3: Any, on_vault: Cli, on_replica: Cli, orders_db: Path, tmp_path: Path
) -> None:
    # given a replicated backup and a vault that is gone
    replicated_backup(on_vault, AT)
    manifest = stored_manifest(s3)
    lose_vault(s3)

    # when it is downloaded from the replica, as stored and decompressed
    stored, raw = tmp_path / "orders.sqlite.zst", tmp_path / "orders.sqlite"
    first = on_replica("download", "orders", BACKUP_ID, "--out", str(stored))
    second = on_replica("download", "orders", "latest", "--out", str(raw), "--decompress")

    # then both files are the backup
    assert first.exit_code == second.exit_code == 0, first.output + second.output
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == manifest.object.sha256
    assert table_rows(raw) == table_rows(orders_db)


def test_reading_the_replica_writes_nothing_to_either_bucket(
    s3: Any, replica_s3: Any, on_vault: Cli, on_replica: Cli, tmp_path: Path
) -> None:
    # given a replicated backup an hour old
    replicated_backup(on_vault, stamp(datetime.now(UTC) - timedelta(hours=1)))
    vault, replica = held(s3, BUCKET), held(replica_s3, REPLICA)

    # when every reading command runs on the replica
    target = tmp_path / "restored.db"
    results = [
        on_replica("list", "orders"),
        on_replica("show", "orders", "latest"),
        on_replica("stats"),
        on_replica("verify", "orders"),
        on_replica("download", "orders", "latest", "--out", str(tmp_path / "a.zst")),
        on_replica("restore", "orders", "--to", str(target), "--dry-run"),
        on_replica("restore", "orders", "--to", str(target), "--yes"),
        on_replica("freshness"),
    ]

    # then each succeeded, and neither bucket gained or lost a version, a marker or an upload
    assert [r.exit_code for r in results] == [0] * len(results), [r.output for r in results]
    assert target.exists()
    assert (held(s3, BUCKET), held(replica_s3, REPLICA)) == (vault, replica)


def test_freshness_on_the_replica_allows_its_lag_and_sends_no_alert(
    cli: Cli, replica_config: Path, tmp_path: Path
) -> None:
    # given alerts configured, and a replicated backup 30 hours old: past stale_after (26h), within it plus
    # the replica's allowed_lag (6h)
    inbox = AlertInbox.create()
    data = yaml.safe_load(replica_config.read_text())
    config = tmp_path / "alerting.yaml"
    config.write_text(yaml.safe_dump({**data, "alerts_topic_arn": inbox.topic_arn}))
    assert cli("backup", "orders", "--at", stamp(datetime.now(UTC) - timedelta(hours=30)), config=config).exit_code == 0
    replicate(BUCKET, REPLICA)

    # when freshness is checked on the replica, then on the vault
    replica = cli("--bucket", REPLICA, "freshness", "--json", config=config)
    replica_alerts = inbox.alerts()
    vault = cli("freshness", "--json", config=config)

    # then the replica is within its lag and alerted nothing; the vault is stale and alerted
    assert replica.exit_code == 0, replica.output
    [entry] = json.loads(replica.stdout)
    assert (entry["status"], entry["stale_after_seconds"]) == ("fresh", 32 * 3600)
    assert replica_alerts == []
    assert vault.exit_code == 1
    assert [alert["event"] for alert in inbox.alerts()] == ["backup_stale"]


def test_freshness_on_the_replica_is_stale_when_it_lags_past_its_allowance(on_vault: Cli, on_replica: Cli) -> None:
    # given a backup 33 hours old on both buckets, and a fresh one the replica has not received
    replicated_backup(on_vault, stamp(datetime.now(UTC) - timedelta(hours=33)))
    assert on_vault("backup", "orders", "--at", stamp(datetime.now(UTC) - timedelta(hours=1))).exit_code == 0

    # when freshness is checked on both
    vault = on_vault("freshness")
    replica = on_replica("freshness")

    # then the vault is fresh and the replica is stale
    assert vault.exit_code == 0, vault.output
    assert_user_error(replica, "Backups need a look: orders (stale).")


# -- refusals --------------------------------------------------------------------------------------

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:backstop-restore"
DEPLOYED = ["--state-machine", MACHINE, "--approval-function", "backstop-approval"]
WRITERS = {
    "backup": ["backup", "orders", "--at", LATER],
    "repair": ["repair", "orders", BACKUP_ID],
    "drill": ["drill", "orders"],
    "sweep": ["sweep"],
}
WORKFLOW = {
    "restore-request": ["restore-request", "orders", "--target", "t", "--reason", "r", "--state-machine", MACHINE],
    "approve": ["approve", "x", "--confirm", f"RESTORE {BACKUP_ID}", *DEPLOYED],
    "reject": ["reject", "x", "--reason", "r", *DEPLOYED],
}


@pytest.mark.parametrize("command", sorted(WRITERS))
def test_a_command_that_writes_is_refused_on_the_replica_and_writes_nothing(
    command: str, s3: Any, replica_s3: Any, on_vault: Cli, on_replica: Cli
) -> None:
    # given a replicated backup
    replicated_backup(on_vault, AT)
    vault, replica = held(s3, BUCKET), held(replica_s3, REPLICA)

    # when the command is run on the replica
    result = on_replica(*WRITERS[command])

    # then it is refused in one sentence and neither bucket changed
    assert_user_error(
        result,
        f"s3://{REPLICA} is the replica of s3://{BUCKET}: it is read-only; run `backstop {command}` against the vault.",
    )
    assert (held(s3, BUCKET), held(replica_s3, REPLICA)) == (vault, replica)


@pytest.mark.parametrize("command", sorted(WORKFLOW))
def test_the_restore_workflow_is_refused_on_the_replica_before_any_aws_call(
    command: str, on_replica: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given no AWS endpoint that could answer (a closed local port)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")

    # when the workflow command is run on the replica
    result = on_replica(*WORKFLOW[command])

    # then it is refused, pointing at the command that restores from the replica
    assert_user_error(
        result, "the restore workflow restores from the vault only", f"`backstop --bucket {REPLICA} restore`."
    )


def test_the_vault_named_with_bucket_works_as_without_it(cli: Cli, replica_config: Path) -> None:
    assert cli("backup", "orders", "--at", AT, config=replica_config).exit_code == 0

    result = cli("--bucket", f"s3://{BUCKET}", "list", "orders", "--json", config=replica_config)

    assert result.exit_code == 0, result.output
    assert [m["backup_id"] for m in json.loads(result.stdout)] == [BACKUP_ID]


@pytest.mark.parametrize("command", [["list", "orders"], ["backup", "orders"], ["restores", "--table", "t"]])
def test_an_unknown_bucket_is_refused(cli: Cli, replica_config: Path, command: list[str]) -> None:
    result = cli("--bucket", "someone-elses", *command, config=replica_config)

    assert_user_error(
        result,
        f"s3://someone-elses is neither the vault (s3://{BUCKET}) nor its replica (s3://{REPLICA}) in backstop.yaml.",
    )


def test_bucket_without_a_configured_replica_is_refused(cli: Cli, config_file: Path) -> None:
    result = cli("--bucket", REPLICA, "list", "orders", config=config_file)

    assert_user_error(result, f"s3://{REPLICA} is not the vault", "configures no replica (storage.replica)")


def test_a_replica_manifest_pointing_at_a_third_bucket_is_refused(
    s3: Any, store: S3Store, on_vault: Cli, on_replica: Cli, tmp_path: Path
) -> None:
    # given a sealed manifest whose object names a third bucket, replicated
    assert on_vault("backup", "orders", "--at", AT).exit_code == 0
    manifest = stored_manifest(s3)
    forged = manifest.model_copy(update={"object": manifest.object.model_copy(update={"bucket": "third"})}).sealed()
    write_manifest(s3, store, forged)
    replicate(BUCKET, REPLICA)

    # when it is verified and restored from the replica
    verified = on_replica("verify", "orders", BACKUP_ID)
    restored = on_replica("restore", "orders", BACKUP_ID, "--to", str(tmp_path / "app.db"), "--yes")

    # then both refuse it, naming the bucket it points at
    assert_user_error(verified, "points at bucket third", f"not {BUCKET} (replicated to {REPLICA}): refused")
    assert_user_error(restored, "points at bucket third")
    assert not (tmp_path / "app.db").exists()


def test_a_corrupted_replica_version_fails_verify(s3: Any, replica_s3: Any, on_vault: Cli, on_replica: Cli) -> None:
    # given a replicated backup whose replica copy then loses a byte, in place (same version id)
    replicated_backup(on_vault, AT)
    manifest = stored_manifest(s3)
    version = manifest.object.version_id
    data = bytearray(replica_s3.get_object(Bucket=REPLICA, Key=manifest.object.key, VersionId=version)["Body"].read())
    data[100] ^= 0xFF
    rot_object(manifest.object.key, version, bytes(data), bucket=REPLICA)

    # when it is verified on the replica and on the vault
    replica = on_replica("verify", "orders")
    vault = on_vault("verify", "orders")

    # then the replica's copy fails, naming the altered bytes, and the vault's passes
    assert_user_error(replica, "the stored bytes were altered")
    assert vault.exit_code == 0, vault.output
