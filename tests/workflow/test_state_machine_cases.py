"""The restore state machine's cases and faults (RELIABILITY.md "Restore workflow"), each a real execution.

Same setting as test_state_machine.py: the synthesized stack stood up on the embedded emulator,
the real restore handler run in-process for every Task, executions started with the samples in
events/restore. Each case injects a real fault (a flipped byte at rest, a target directory that
vanishes or turns read-only, a corrupt target, an application writing to the target, a file size
limit, a CHECK constraint that cannot be restored) and asserts the target's data, the lock, the
audit record and the alerts.

Where a fault must happen between two states (a volume lost after the safety snapshot), the
restore function's entry point is wrapped to inject it just before the step runs; the step itself
runs unchanged.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from backstop.adapters.s3_store import S3Store
from backstop.config import Config, parse_config
from backstop.handlers import restore as restore_handler
from backstop.manifest import Trigger
from backstop.services.backup import BackupRequest, BackupService
from local.emulator import flip_byte, running
from local.lambdas import in_process_lambdas
from local.stack import stand_up
from tests.conftest import create_orders_db, table_rows
from tests.engines.test_postgres_engine import ADMIN, HOST, PORT, admin, connect, create_shop, table_checksums
from tests.services import corrupt_table, leftovers
from tests.workflow.test_state_machine import BUCKET, World, build_world, sample, synthesize

pytestmark = pytest.mark.xdist_group("emulator")

SCHEDULED = datetime(2026, 11, 21, 2, tzinfo=UTC)


# -- worlds -----------------------------------------------------------------------------------------


def stand_up_world(config: Config, database: str) -> Iterator[World]:
    """``build_world`` for any configuration: the stack stood up, one committed backup of ``database``."""
    template = synthesize(config)
    saved = os.environ.get("MOTO_PORT")
    with running() as emulator:
        emulator.execute_workflows()
        deployed = stand_up(emulator, template)
        BackupService(config, store_of(emulator.client("s3"))).run(
            BackupRequest(database, SCHEDULED, "scheduled", Trigger(kind="user", by="t"))
        )
        with in_process_lambdas(extra_env=emulator.env) as calls:
            yield World(emulator, deployed, template, calls)
    if saved is None:
        os.environ.pop("MOTO_PORT", None)
    else:
        os.environ["MOTO_PORT"] = saved


def store_of(s3: Any) -> S3Store:
    return S3Store(s3, bucket=BUCKET, prefix="backups")


def world_store(world: World) -> S3Store:
    return store_of(world.emulator.client("s3"))


def sqlite_paths(
    tmp_path: Path, *, source_rows: int = 400, staging_rows: int = 15, wal: bool = True
) -> dict[str, Path]:
    """The paths ``build_world`` takes, the staging database alone in its own directory (its volume)."""
    volume = tmp_path / "staging-volume"
    volume.mkdir()
    return {
        "source": create_orders_db(tmp_path / "orders.db", rows=source_rows),
        "staging": create_orders_db(volume / "staging.db", rows=staging_rows, wal=wal),
        "work": tmp_path / "work",
    }


@pytest.fixture
def pg_database() -> Iterator[Callable[[str], str]]:
    """Create uniquely named PostgreSQL databases; afterwards every database starting with this test's
    prefix is dropped, including what restores derive from them (``<name>_restore_*``, ``<name>_pre_restore_*``)."""
    prefix = f"bswf_{uuid.uuid4().hex[:10]}"

    def create(role: str) -> str:
        name = f"{prefix}_{role}"
        with admin() as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    yield create
    with admin() as conn:
        for name in databases_like(prefix):
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def databases_like(prefix: str) -> list[str]:
    with admin() as conn:
        rows = conn.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY datname", (prefix,)
        ).fetchall()
    return [str(r[0]) for r in rows]


SENTINEL_ENV = "BSWF_SHOP_PASSWORD"
SENTINEL = "sentinel-Qx7-restore-never-print-me"


@pytest.fixture(autouse=True)
def sentinel_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SENTINEL_ENV, SENTINEL)


def postgres_config(source: str, staging: str, work: Path) -> Config:
    work.mkdir(exist_ok=True)
    entry = {
        "name": "shop",
        "engine": "postgres",
        "host": HOST,
        "port": PORT,
        "dbname": source,
        "user": ADMIN,
        "schedule": "cron(0 2 * * ? *)",
        "stale_after": "26h",
        # trust authentication ignores the password: it is a sentinel that must surface nowhere
        "password_env": SENTINEL_ENV,
        "restore_targets": {"staging": {"dbname": staging}},
    }
    return parse_config(json.dumps({"bucket": BUCKET, "work_dir": str(work), "databases": [entry]}))


def other_data(dbname: str, rows: int = 50) -> None:
    """What a staging database holds before it is refreshed: nothing like the source."""
    with connect(dbname) as conn:
        conn.execute("CREATE TABLE notes (id int PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes SELECT i, 'old ' || i FROM generate_series(1, %s) AS i", (rows,))


# -- helpers ------------------------------------------------------------------------------------------


def entered(world: World, arn: str) -> list[str]:
    return [e["stateEnteredEventDetails"]["name"] for e in world.history(arn) if "stateEnteredEventDetails" in e]


def approve_when_asked(world: World, execution: str) -> str:
    """Wait for the approval request and approve it with the right phrase; the backup id."""
    world.wait_for_approval(execution)
    backup_id = world.table.pending(execution).backup_id
    world.approve(execution, f"RESTORE {backup_id}")
    return backup_id


def before_step(monkeypatch: pytest.MonkeyPatch, step: str, fault: Callable[[], object]) -> list[str]:
    """Inject ``fault`` just before the restore function runs ``step`` (then the real step runs); returns
    the steps seen, so a test can assert that the fault was injected."""
    real = restore_handler.handler
    seen: list[str] = []

    def handler(event: dict[str, Any], context: Any) -> Any:
        seen.append(str(event.get("step")))
        if event.get("step") == step:
            fault()
        return real(event, context)

    monkeypatch.setattr(restore_handler, "handler", handler)
    return seen


@contextmanager
def read_only_directory(path: Path) -> Iterator[None]:
    """Nobody may create, rename or delete entries in ``path`` (a volume remounted read-only), root included:
    mode 0555, and the immutable attribute where mode bits do not bind (root)."""
    path.chmod(0o555)
    immutable = False
    try:
        if _writable(path):
            immutable = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
            if not immutable or _writable(path):
                pytest.skip("cannot make a directory read-only here (root without chattr +i)")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(0o755)


def _writable(path: Path) -> bool:
    probe = path / ".probe"
    try:
        probe.touch()
    except OSError:
        return False
    probe.unlink()
    return True


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """No file of this process may grow past ``limit`` bytes: a write crossing it fails with EFBIG, the way
    a full disk fails a write halfway (SIGXFSZ ignored, as a server would)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def insert_order(path: Path) -> None:
    """An application still pointed at the target writes one order."""
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("INSERT INTO orders (customer_id, amount_cents, note) VALUES (1, 999, 'written by the app')")


# -- 1. PostgreSQL ------------------------------------------------------------------------------------


def test_an_approved_restore_of_postgres_refreshes_staging_after_a_safety_snapshot(
    pg_database: Callable[[str], str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # given a PostgreSQL source with its committed backup, and a staging database holding other data
    caplog.set_level("DEBUG")
    source, staging = pg_database("src"), pg_database("stg")
    create_shop(source, orders=300)
    other_data(staging)
    old = table_checksums(staging)
    for world in stand_up_world(postgres_config(source, staging, tmp_path / "work"), "shop"):
        # when a restore of latest into staging is approved
        arn = world.start(sample("latest-to-staging.json", database="shop"), "run-pg")
        backup_id = approve_when_asked(world, "run-pg")
        described = world.wait(arn)

        # then staging holds the source's data, checked table by table
        assert described["status"] == "SUCCEEDED", described
        assert entered(world, arn) == [
            "Resolve", "IdentifyRequester", "ValidateArtifact", "Lock", "Plan", "DryRun?", "Approval", "CheckApproval",
            "SafetySnapshot", "Restore", "ValidateTarget", "FinishRestored", "Restored",
        ]  # fmt: skip
        assert table_checksums(staging) == table_checksums(source)
        assert databases_like(f"{staging}_restore_") == []
        # and its previous content was committed first as a pre-restore backup
        audit = world.table.audit("run-pg") or {}
        safety_id = audit["safety_snapshot"]["backup_id"]
        assert safety_id.startswith("shop-pre-restore-staging-")
        safety = world_store(world).get_manifest(safety_id)
        assert safety.type == "pre-restore"
        assert {name: stat.rows for name, stat in safety.tables.items()} == {n: c for n, (c, _) in old.items()}
        # the lock is free, the audit and the alerts tell the story
        assert world.table.holder("shop", "staging") is None
        assert (
            audit["outcome"] == "restored"
            and audit["backup_id"] == backup_id
            and audit["approver"].endswith(":user/bob")
        )
        alerts = world.alerts(at_least=2)
        assert [a["message"]["event"] for a in alerts] == ["restore_approval_requested", "restore_finished"]
        assert staging in alerts[0]["message"]["plan"]["target_identity"]
        assert alerts[-1]["message"]["safety_snapshot"] == safety_id
        # and the password reached no event, history, audit record, alert, log or output
        seen = json.dumps([world.history(arn), audit, alerts], default=str) + caplog.text
        out, err = capfd.readouterr()
        assert SENTINEL not in seen + out + err


# -- 2. wrong confirmation phrase ---------------------------------------------------------------------


@pytest.fixture
def paths(tmp_path: Path) -> dict[str, Path]:
    return sqlite_paths(tmp_path)


def test_a_wrong_confirmation_phrase_leaves_the_restore_waiting_for_the_right_one(
    paths: dict[str, Path],
) -> None:
    for world in build_world(paths):
        # given a restore waiting for approval
        before = table_rows(paths["staging"])
        arn = world.start(sample("latest-to-staging.json"), "run-phrase")
        world.wait_for_approval("run-phrase")
        backup_id = world.table.pending("run-phrase").backup_id

        # when someone confirms with the wrong phrase
        ok, refused = world.answer("approve", "run-phrase", world.bob, phrase=f"RESTORE {backup_id}x")
        assert (
            not ok
            and refused["errorType"] == "WrongConfirmationError"
            and f"RESTORE {backup_id}" in refused["errorMessage"]
        )

        # then the execution still waits (a second later too), the approval is still pending, nothing was touched
        time.sleep(1)
        assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
        assert entered(world, arn)[-1] == "Approval"
        assert world.table.pending("run-phrase").backup_id == backup_id
        assert (world.table.holder("orders", "staging") or {})["owner"] == "run-phrase"
        assert (world.table.audit("run-phrase") or {})["outcome"] == "awaiting approval"
        assert table_rows(paths["staging"]) == before

        # and the right phrase then completes the restore
        world.approve("run-phrase", f"RESTORE {backup_id}")
        described = world.wait(arn)
        assert described["status"] == "SUCCEEDED", described
        assert table_rows(paths["staging"]) == table_rows(paths["source"])
        assert world.table.holder("orders", "staging") is None
        audit = world.table.audit("run-phrase") or {}
        assert audit["outcome"] == "restored" and audit["approver"].endswith(":user/bob")
        assert [a["message"]["event"] for a in world.alerts(at_least=2)] == [
            "restore_approval_requested",
            "restore_finished",
        ]


# -- 3. corrupt backup --------------------------------------------------------------------------------


def test_a_corrupt_backup_fails_before_the_lock_with_the_target_untouched(paths: dict[str, Path]) -> None:
    for world in build_world(paths):
        # given the committed backup's object with one byte flipped at rest (its recorded checksum unchanged)
        manifest = world_store(world).get_manifest("orders-20261121T020000Z")
        flip_byte(BUCKET, manifest.object.key, manifest.object.version_id, offset=manifest.object.size // 2)
        before = paths["staging"].read_bytes()

        # when a restore of exactly that backup is started (named by id: there is no older one to fall back on)
        started = sample("given-backup.json", backup=manifest.backup_id, target="staging")
        described = world.wait(world.start(started, "run-corrupt"))

        # then it fails at the artifact's validation: no lock was ever taken, the target is untouched
        assert described["status"] == "FAILED" and described["error"] == "RestoreFailed"
        states = entered(world, described["executionArn"])
        assert (
            states[:3] == ["Resolve", "IdentifyRequester", "ValidateArtifact"]
            and "Lock" not in states
            and "Approval" not in states
        )
        assert world.table.holder("orders", "staging") is None
        assert paths["staging"].read_bytes() == before
        audit = world.table.audit("run-corrupt") or {}
        assert audit["outcome"] == "not restored"
        assert audit["failure_reason"].startswith("ChecksumMismatchError")
        assert "the stored bytes were altered" in audit["failure_reason"]
        (alert,) = world.alerts(at_least=1)
        assert alert["message"]["event"] == "restore_failed"
        assert alert["message"]["backup_id"] == manifest.backup_id
        assert "ChecksumMismatchError" in alert["message"]["reason"]


# -- 4. rollback failing ------------------------------------------------------------------------------


def test_a_rollback_that_fails_keeps_the_lock_and_asks_for_a_person(
    paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given the staging volume lost right after the safety snapshot (before the restore step runs)
    volume = paths["staging"].parent
    away = volume.with_name("staging-volume-unmounted")
    seen = before_step(monkeypatch, "restore", lambda: volume.rename(away))
    for world in build_world(paths):
        before = table_rows(paths["staging"])

        # when the restore is approved
        arn = world.start(sample("latest-to-staging.json"), "run-stuck")
        approve_when_asked(world, "run-stuck")
        described = world.wait(arn)

        # then neither the restore nor the rollback could write: the execution needs a person
        assert "restore" in seen and not volume.exists()
        assert described["status"] == "FAILED" and described["error"] == "RollbackFailed"
        assert entered(world, arn)[-3:] == ["Rollback", "FinishRollbackFailed", "RollbackFailed"]
        # and the lock stays with this execution, without expiry, so no other restore proceeds
        holder = world.table.holder("orders", "staging") or {}
        assert holder["owner"] == "run-stuck" and holder["kept"] is True and "expires_at" not in holder
        audit = world.table.audit("run-stuck") or {}
        assert audit["outcome"] == "rollback failed" and "does not exist" in audit["failure_reason"]
        alert = world.alerts(at_least=2)[-1]
        assert alert["message"]["event"] == "restore_failed"
        assert "manual intervention needed" in alert["subject"]
        assert alert["message"]["safety_snapshot"] == audit["safety_snapshot"]["backup_id"]
        # and once the volume is back, it holds the data it had (nothing was written to it)
        away.rename(volume)
        assert table_rows(paths["staging"]) == before


def test_a_rollback_failing_on_a_read_only_target_directory_keeps_the_lock_and_alerts(tmp_path: Path) -> None:
    # given a staging database (rollback journal: reads need no new file) on a volume that turned read-only
    paths = sqlite_paths(tmp_path, wal=False)
    for world in build_world(paths):
        before = paths["staging"].read_bytes()
        with read_only_directory(paths["staging"].parent):
            # when the restore is approved (the safety snapshot only reads the target, so it succeeds)
            arn = world.start(sample("latest-to-staging.json"), "run-readonly")
            approve_when_asked(world, "run-readonly")
            described = world.wait(arn)

        # then the restore and the rollback both failed to write, and the target is as it was
        audit = world.table.audit("run-readonly") or {}
        seen = (entered(world, arn), audit.get("outcome"), audit.get("failure_reason"))
        assert described["status"] == "FAILED" and described["error"] == "RollbackFailed", seen
        assert paths["staging"].read_bytes() == before
        assert (world.table.audit("run-readonly") or {}).get("safety_snapshot")
        # and the lock is kept, audited, alerted: a person must look
        holder = world.table.holder("orders", "staging") or {}
        assert holder.get("owner") == "run-readonly" and holder.get("kept") is True
        assert (world.table.audit("run-readonly") or {})["outcome"] == "rollback failed"
        alerts = world.alerts(at_least=2)
        assert "manual intervention needed" in alerts[-1]["subject"]


# -- 5. safety snapshot failing -----------------------------------------------------------------------


def test_a_safety_snapshot_that_fails_ends_the_restore_before_anything_is_written(tmp_path: Path) -> None:
    # given a staging database that is corrupt (its snapshot cannot pass the integrity check)
    paths = sqlite_paths(tmp_path, staging_rows=300)
    corrupt_table(paths["staging"])
    for world in build_world(paths):
        before = paths["staging"].read_bytes()

        # when the restore is approved
        arn = world.start(sample("latest-to-staging.json"), "run-nosnap")
        approve_when_asked(world, "run-nosnap")
        described = world.wait(arn)

        # then it ended at the safety snapshot: no destructive step ran, the target's bytes are unchanged
        assert described["status"] == "FAILED" and described["error"] == "RestoreFailed"
        states = entered(world, arn)
        assert "SafetySnapshot" in states and "Restore" not in states and "Rollback" not in states
        assert paths["staging"].read_bytes() == before
        assert [p.name for p in paths["staging"].parent.iterdir() if "restore" in p.name] == []
        assert world_store(world).newest_backup_id("orders-pre-restore-staging") is None
        # and the lock is free, the audit and the alert name the failure
        assert world.table.holder("orders", "staging") is None
        audit = world.table.audit("run-nosnap") or {}
        assert audit["outcome"] == "not restored" and audit["failure_reason"].startswith("IntegrityError")
        assert "safety_snapshot" not in audit
        alert = world.alerts(at_least=2)[-1]
        assert alert["message"]["event"] == "restore_failed" and alert["message"]["safety_snapshot"] is None


# -- 6. post-restore validation mismatch --------------------------------------------------------------


def test_a_target_changed_before_validation_is_rolled_back_to_its_previous_data(
    paths: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    for world in build_world(paths):
        # given an application still writing to staging, between the restore and its validation
        before = table_rows(paths["staging"])
        seen = before_step(monkeypatch, "validate_target", lambda: insert_order(paths["staging"]))

        # when the restore is approved
        arn = world.start(sample("latest-to-staging.json"), "run-mismatch")
        approve_when_asked(world, "run-mismatch")
        described = world.wait(arn)

        # then validation found the mismatch and the rollback put the pre-restore data back
        assert "validate_target" in seen
        assert described["status"] == "FAILED" and described["error"] == "RestoreRolledBack"
        assert entered(world, arn)[-4:] == ["ValidateTarget", "Rollback", "FinishRolledBack", "RolledBack"]
        assert table_rows(paths["staging"]) == before
        assert world.table.holder("orders", "staging") is None
        audit = world.table.audit("run-mismatch") or {}
        assert audit["outcome"] == "rolled back"
        assert (
            "does not match the backup" in audit["failure_reason"]
            and "400 expected, 401 found" in (audit["failure_reason"])
        )
        alert = world.alerts(at_least=2)[-1]
        assert alert["message"]["event"] == "restore_failed" and alert["message"]["outcome"] == "rolled back"
        assert alert["message"]["safety_snapshot"] == audit["safety_snapshot"]["backup_id"]


# -- 7. restore failing halfway -----------------------------------------------------------------------


def test_a_restore_failing_halfway_on_a_full_disk_leaves_the_old_data_and_no_temp_files(
    tmp_path: Path,
) -> None:
    # given a source far larger than staging, and writes limited to a size between the two (a disk that fills up)
    paths = sqlite_paths(tmp_path, source_rows=6000, staging_rows=15)
    source_size, staging_size = paths["source"].stat().st_size, paths["staging"].stat().st_size
    limit = 4 * staging_size
    assert limit < source_size // 2, (source_size, staging_size)
    for world in build_world(paths):
        before = table_rows(paths["staging"])

        # when the restore is approved and runs under that limit
        arn = world.start(sample("latest-to-staging.json"), "run-full")
        world.wait_for_approval("run-full")
        with file_size_limit(limit):
            approve_when_asked(world, "run-full")
            described = world.wait(arn)

        # then the restore failed writing, the rollback put back the old data: old, never a mix
        audit = world.table.audit("run-full") or {}
        seen = (entered(world, arn), audit.get("outcome"), audit.get("failure_reason"), described.get("cause"))
        assert described["status"] == "FAILED" and described["error"] == "RestoreRolledBack", seen
        assert table_rows(paths["staging"]) == before
        with closing(sqlite3.connect(paths["staging"])) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # and no half-written file is left beside the target or in the work directory
        assert [p.name for p in paths["staging"].parent.iterdir() if ".restore-" in p.name] == []
        assert leftovers(paths["work"]) == []
        assert world.table.holder("orders", "staging") is None
        audit = world.table.audit("run-full") or {}
        assert audit["outcome"] == "rolled back" and "File too large" in audit["failure_reason"]
        assert world.alerts(at_least=2)[-1]["message"]["event"] == "restore_failed"


def test_a_full_disk_while_checking_latest_is_not_reported_as_a_corrupt_backup(tmp_path: Path) -> None:
    # given an intact backup larger than what the work space can still take
    paths = sqlite_paths(tmp_path, source_rows=6000, staging_rows=15)
    limit = paths["source"].stat().st_size // 3
    for world in build_world(paths):
        before = table_rows(paths["staging"])

        # when a restore of latest is started while the disk is that full
        with file_size_limit(limit):
            described = world.wait(world.start(sample("latest-to-staging.json"), "run-nospace"))

        # then it stops before the lock with the target untouched
        assert described["status"] == "FAILED" and described["error"] == "RestoreFailed"
        assert table_rows(paths["staging"]) == before
        assert world.table.holder("orders", "staging") is None
        audit = world.table.audit("run-nospace") or {}
        assert audit["outcome"] == "not restored" and "File too large" in audit["failure_reason"]
        # and the backup is not blamed: no corrupt-backup alert, no "cannot be decompressed"
        events = [a["message"]["event"] for a in world.alerts(at_least=1)]
        assert events == ["restore_failed"], events
        assert "cannot be decompressed" not in audit["failure_reason"]


# A CHECK constraint through a function whose body names a table without its schema: pg_dump clears
# search_path, so the restore's COPY fails on the first row, after other tables were loaded.
UNRESTORABLE = """
CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL);
CREATE FUNCTION known_customer(c int) RETURNS boolean LANGUAGE sql STABLE
    AS $$ SELECT EXISTS (SELECT 1 FROM customers WHERE id = c) $$;
CREATE TABLE orders (
    id int PRIMARY KEY,
    customer_id int NOT NULL CHECK (known_customer(customer_id)),
    amount_cents int NOT NULL
);
CREATE TABLE zones (id int PRIMARY KEY, label text);
INSERT INTO customers SELECT i, 'customer ' || i FROM generate_series(1, 100) AS i;
INSERT INTO orders SELECT i, 1 + i % 100, i FROM generate_series(1, 500) AS i;
INSERT INTO zones SELECT i, 'zone ' || i FROM generate_series(1, 20) AS i;
"""


def test_a_postgres_restore_failing_halfway_on_a_constraint_leaves_staging_whole(
    pg_database: Callable[[str], str], tmp_path: Path
) -> None:
    # given a backup whose data fails a CHECK constraint while it is loaded, and staging with other data
    source, staging = pg_database("src"), pg_database("stg")
    with connect(source) as conn:
        conn.execute(UNRESTORABLE)
    other_data(staging)
    old = table_checksums(staging)
    for world in stand_up_world(postgres_config(source, staging, tmp_path / "work"), "shop"):
        # when the restore is approved
        arn = world.start(sample("latest-to-staging.json", database="shop"), "run-halfway")
        approve_when_asked(world, "run-halfway")
        described = world.wait(arn)

        # then the load failed in the fresh database, which is gone, and staging holds its old data whole
        assert described["status"] == "FAILED" and described["error"] == "RestoreRolledBack", described
        assert table_checksums(staging) == old
        assert databases_like(f"{staging}_restore_") == []
        assert world.table.holder("shop", "staging") is None
        audit = world.table.audit("run-halfway") or {}
        assert audit["outcome"] == "rolled back" and audit["failure_reason"].startswith("RestoreError")
        assert "COPY orders" in audit["failure_reason"] and "was not touched" in audit["failure_reason"]
        assert world.alerts(at_least=2)[-1]["message"]["event"] == "restore_failed"
