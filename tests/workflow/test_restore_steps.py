"""The restore workflow's steps on moto (S3, DynamoDB) with real SQLite targets, in the state machine's order.

These drive the steps directly, as the state machine's Tasks call them; the synthesized state
machine itself is executed in the workflow tests that build on the stack.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import zstandard

from backstop.adapters.restore_table import RestoreTable
from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.deadline import Deadline
from backstop.errors import (
    ApprovalInvalidError,
    BackstopError,
    BackupAlreadyRunningError,
    BackupNotFoundError,
    ChecksumMismatchError,
    DeadlineExceededError,
    IntegrityError,
    RestoreError,
    TargetLockedError,
)
from backstop.grants import GrantClaims, LocalGrantSigner, seal
from backstop.services.restore_workflow import (
    RestoreTooLongError,
    RestoreWorkflow,
    RollbackFailedError,
    safety_database,
)
from tests.conftest import BUCKET, REGION, create_orders_db, table_rows
from tests.handlers import commit_backup
from tests.services import RecordingNotifier, at, replace_artifact, run_backup, write_manifest
from tests.store.test_restore_table import create_table

EXECUTION = "exec-0001"
MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:Backstop-restore"
SIGNER = LocalGrantSigner()
"""Stands in for the approval key: the approval component's own tests run it on the emulator's KMS."""


@pytest.fixture
def table(s3: Any) -> RestoreTable:  # s3 keeps moto active
    client = boto3.client("dynamodb", region_name=REGION)
    create_table(client)
    return RestoreTable(client, "backstop-restores")


@pytest.fixture
def world(
    tmp_path: Path, make_config: Callable[..., Config], store: S3Store, table: RestoreTable
) -> Iterator[dict[str, Any]]:
    """A source database with a committed backup, a staging target holding other data, and the workflow."""
    source = create_orders_db(tmp_path / "orders.db", rows=500)
    staging = tmp_path / "staging.db"
    entry = {
        "name": "orders",
        "engine": "sqlite",
        "path": str(source),
        "schedule": "rate(1 day)",
        "stale_after": "26h",
        "restore_targets": {"staging": {"path": str(staging)}, "in-place": {}},
    }
    config = make_config(entry)
    manifest = run_backup(config, store, at(21)).manifest
    create_orders_db(staging, rows=20)
    notifier = RecordingNotifier()

    def workflow(**restore: Any) -> RestoreWorkflow:
        """The workflow, with ``restore`` settings (approval_timeout, distinct_approver) in its config."""
        chosen = make_config(entry, restore=restore) if restore else config
        return RestoreWorkflow(chosen, store, table, notifier, grants=SIGNER, state_machine_arn=MACHINE)

    yield {
        "config": config,
        "source": source,
        "staging": staging,
        "manifest": manifest,
        "notifier": notifier,
        "workflow": workflow,
        "table": table,
    }


def request(**overrides: Any) -> dict[str, Any]:
    return {
        "database": "orders",
        "backup": "latest",
        "target": "staging",
        "dry_run": False,
        "requested_by": "alice",
        "reason": "refresh staging",
        **overrides,
    }


def grant_for(state: dict[str, Any], *, signer: Any = SIGNER, **changes: Any) -> dict[str, Any]:
    """What the approval component answers for ``state`` (``changes`` alter the claims it seals)."""
    now = datetime.now(UTC)
    pinned = state["backup"]
    claims = {
        "execution": f"{MACHINE.replace(':stateMachine:', ':execution:')}:{state['execution']}",
        "database": state["database"],
        "target": state["target"],
        "backup_id": pinned["backup_id"],
        "sha256": pinned["sha256"],
        "object_version": pinned["object_version"],
        "manifest_version": pinned["manifest_version"],
        "approver": "user:AIDABOB",
        "approver_arn": "arn:aws:iam::123456789012:user/bob",
        "requester": None,
        "approved_at": now,
        "expires_at": now + timedelta(hours=6),
        **changes,
    }
    return {"grant": seal(GrantClaims(**claims), signer).model_dump(mode="json")}


def until_approval(workflow: RestoreWorkflow, data: dict[str, Any], execution: str = EXECUTION) -> dict[str, Any]:
    """Every step up to the approval wait, then the approval component's answer, checked as CheckApproval does."""
    state = workflow.resolve(data, execution)
    state = workflow.validate_artifact(state)
    state = workflow.lock(state)
    state = workflow.plan(state)
    workflow.request_approval(state)
    return workflow.check_approval({**state, "approval": grant_for(state)})


def test_an_approved_restore_replaces_the_target_and_leaves_an_audit_trail(world: dict[str, Any]) -> None:
    # given a restore of latest into staging, up to the approval
    workflow: RestoreWorkflow = world["workflow"]()
    staging_before = table_rows(world["staging"])
    state = until_approval(workflow, request())
    plan = state["plan"]
    assert plan["backup_id"] == world["manifest"].backup_id
    assert plan["rows"]["orders"] == {"backup": 500, "target": 20}
    assert plan["confirmation"] == f"RESTORE {world['manifest'].backup_id}"
    # the plan went out with how to approve, and the token did not
    subject, message = world["notifier"].alerts[-1]
    assert "awaits approval" in subject and "backstop approve exec-0001" in str(message["approve"])
    assert "token" not in str(world["notifier"].alerts)

    # when the remaining steps run after bob's approval
    state = workflow.safety_snapshot(state)
    state = workflow.restore(state)
    state = workflow.validate_target(state)
    workflow.finish(state, "restored")

    # then staging equals the source, the safety snapshot holds staging's old data, the lock is free
    assert table_rows(world["staging"]) == table_rows(world["source"])
    safety = state["safety"]["backup_id"]
    assert safety.startswith(safety_database("orders", "staging"))
    assert world["table"].holder("orders", "staging") is None
    audit = world["table"].audit(EXECUTION) or {}
    assert (
        audit["requested_by"] == "alice"
        and audit["approver"] == "arn:aws:iam::123456789012:user/bob"
        and audit["outcome"] == "restored"
    )
    assert audit["safety_snapshot"]["backup_id"] == safety
    assert set(audit["timings"]) >= {"resolve", "validate_artifact", "lock", "plan", "safety_snapshot", "restore"}
    assert staging_before != table_rows(world["staging"])


def test_the_safety_snapshot_never_becomes_the_databases_latest(world: dict[str, Any], store: S3Store) -> None:
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    workflow.safety_snapshot(state)
    assert store.newest_backup_id("orders") == world["manifest"].backup_id


def test_a_second_restore_of_the_same_target_is_refused_before_approval(world: dict[str, Any]) -> None:
    workflow: RestoreWorkflow = world["workflow"]()
    until_approval(workflow, request())
    state = workflow.validate_artifact(workflow.resolve(request(), "exec-0002"))
    with pytest.raises(TargetLockedError) as refused:
        workflow.lock(state)
    assert EXECUTION in str(refused.value)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"skip_approval": True}, "skip_approval"),
        ({"target": "production"}, "not a restore target"),
        ({"database": "nope"}, "nope"),
        ({"backup": "orders-2026"}, "Invalid backup id"),
        ({"requested_by": ""}, "requested_by"),
    ],
)
def test_bad_input_is_refused_in_one_sentence(world: dict[str, Any], change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Exception) as refused:
        world["workflow"]().resolve(request(**change), EXECUTION)
    assert fragment in str(refused.value)
    assert world["table"].audit(EXECUTION) is None


def test_point_in_time_picks_the_newest_backup_at_or_before(world: dict[str, Any], store: S3Store) -> None:
    config = world["config"]
    later = run_backup(config, store, at(22)).manifest
    workflow: RestoreWorkflow = world["workflow"]()
    assert workflow.resolve(request(backup={"before": "2026-11-21T12:00:00Z"}), "e1")["backup"]["backup_id"] == (
        world["manifest"].backup_id
    )
    assert workflow.resolve(request(backup={"before": "2026-11-22T02:00:00Z"}), "e2")["backup"]["backup_id"] == (
        later.backup_id
    )
    with pytest.raises(BackupNotFoundError):
        workflow.resolve(request(backup={"before": "2026-11-01T00:00:00Z"}), "e3")


def test_a_corrupt_backup_fails_validation_before_any_lock(world: dict[str, Any], s3: Any, store: S3Store) -> None:
    # given the backup's stored bytes with one byte flipped (the manifest still records the original checksum)
    manifest = world["manifest"]
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=manifest.object.key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    version = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=bytes(body))["VersionId"]
    pinned = manifest.model_copy(update={"object": manifest.object.model_copy(update={"version_id": version})})
    write_manifest(s3, store, pinned.sealed())

    # when the workflow validates it, then it fails on the checksum and no lock was taken
    workflow: RestoreWorkflow = world["workflow"]()
    state = workflow.resolve(request(), EXECUTION)
    with pytest.raises(ChecksumMismatchError):
        workflow.validate_artifact(state)
    assert world["table"].holder("orders", "staging") is None


def flip_a_byte(s3: Any, store: S3Store, manifest: Any) -> None:
    """Rewrite the artifact with one byte flipped; the manifest points at it but keeps the original checksum."""
    body = bytearray(s3.get_object(Bucket=BUCKET, Key=manifest.object.key)["Body"].read())
    body[len(body) // 2] ^= 0xFF
    version = s3.put_object(Bucket=BUCKET, Key=manifest.object.key, Body=bytes(body))["VersionId"]
    pinned = manifest.model_copy(update={"object": manifest.object.model_copy(update={"version_id": version})})
    write_manifest(s3, store, pinned.sealed())


def test_latest_whose_newest_backup_is_corrupt_restores_the_previous_one_and_alerts(
    world: dict[str, Any], s3: Any, store: S3Store
) -> None:
    # given an older good backup (the 20th) and the newest (the 21st) with a flipped byte
    config = world["config"]
    older = run_backup(config, store, at(20)).manifest
    flip_a_byte(s3, store, world["manifest"])

    # when a restore of latest is validated and planned
    workflow: RestoreWorkflow = world["workflow"]()
    state = workflow.validate_artifact(workflow.resolve(request(), EXECUTION))
    state = workflow.plan(workflow.lock(state))

    # then the plan names the backup actually chosen, and the broken one was alerted and audited
    assert state["backup"]["backup_id"] == older.backup_id
    assert state["plan"]["backup_id"] == older.backup_id
    assert state["plan"]["confirmation"] == f"RESTORE {older.backup_id}"
    ((subject, alert),) = [(t, m) for t, m in world["notifier"].alerts if m["event"] == "backup_corrupt"]
    assert alert["backup_id"] == world["manifest"].backup_id and "ChecksumMismatch" in str(alert["error"])
    assert world["manifest"].backup_id in subject
    audit = world["table"].audit(EXECUTION) or {}
    assert audit["backup_id"] == older.backup_id
    assert [s["backup_id"] for s in audit["skipped_backups"]] == [world["manifest"].backup_id]


def test_a_corrupt_backup_named_by_id_is_never_swapped_for_another(
    world: dict[str, Any], s3: Any, store: S3Store
) -> None:
    config = world["config"]
    run_backup(config, store, at(20))
    flip_a_byte(s3, store, world["manifest"])

    workflow: RestoreWorkflow = world["workflow"]()
    with pytest.raises(ChecksumMismatchError):
        workflow.validate_artifact(workflow.resolve(request(backup=world["manifest"].backup_id), EXECUTION))
    assert not [m for _, m in world["notifier"].alerts if m["event"] == "backup_corrupt"]


def test_a_backup_with_a_broken_database_inside_fails_the_engine_check(
    world: dict[str, Any], s3: Any, store: S3Store, tmp_path: Path
) -> None:
    # given an artifact rewritten consistently (checksums match) around a SQLite file with a damaged page
    raw = bytearray(world["source"].read_bytes())
    raw[4096 * 2 + 100 : 4096 * 2 + 200] = b"\xff" * 100
    replace_artifact(s3, store, world["manifest"], zstandard.compress(bytes(raw)), raw=bytes(raw))

    # when the workflow validates it, then the engine's integrity check refuses it
    workflow: RestoreWorkflow = world["workflow"]()
    with pytest.raises(IntegrityError):
        workflow.validate_artifact(workflow.resolve(request(), EXECUTION))


def test_a_restore_failing_after_the_snapshot_rolls_back_to_the_old_data(
    world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an approved restore whose post-restore validation fails
    workflow: RestoreWorkflow = world["workflow"]()
    before = table_rows(world["staging"])
    state = until_approval(workflow, request())
    state = workflow.restore(workflow.safety_snapshot(state))
    with sqlite3.connect(world["staging"]) as conn:  # the restored target is damaged after the swap
        conn.execute("DELETE FROM orders WHERE id % 2 = 0")
    conn.close()
    with pytest.raises(RestoreError):
        workflow.validate_target(state)

    # when the state machine rolls back and finishes
    state = workflow.rollback(state)
    workflow.finish(state, "rolled back", {"Error": "RestoreError", "Cause": "validation failed"})

    # then the target holds its pre-restore data, the lock is free, the audit and the alert say so
    assert table_rows(world["staging"]) == before
    assert world["table"].holder("orders", "staging") is None
    assert (world["table"].audit(EXECUTION) or {})["outcome"] == "rolled back"
    subject, message = world["notifier"].alerts[-1]
    assert message["event"] == "restore_failed" and "rolled back" in subject


def test_a_failing_rollback_keeps_the_lock_and_asks_for_intervention(
    world: dict[str, Any], store: S3Store, s3: Any
) -> None:
    # given a restore after its safety snapshot, whose snapshot artifact then disappears
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    state = workflow.restore(workflow.safety_snapshot(state))
    snapshot = store.get_manifest(state["safety"]["backup_id"])
    s3.delete_object(Bucket=snapshot.object.bucket, Key=snapshot.object.key, VersionId=snapshot.object.version_id)

    # when the rollback runs, and the state machine then finishes the execution as "rollback failed"
    with pytest.raises(RollbackFailedError) as failure:
        workflow.rollback(state)
    assert "manual intervention needed" in str(failure.value)
    workflow.finish(state, "rollback failed", {"Error": "RollbackFailedError", "Cause": str(failure.value)})

    # then the lock is kept (no later restore may proceed), and the alert asks for a person
    held = world["table"].holder("orders", "staging") or {}
    assert held["kept"] is True
    with pytest.raises(TargetLockedError):
        workflow.lock(workflow.resolve(request(), "exec-0002") | {"execution": "exec-0002"})
    assert "manual intervention needed" in world["notifier"].alerts[-1][0]
    assert (world["table"].audit(EXECUTION) or {})["outcome"] == "rollback failed"


def test_a_dry_run_reports_the_plan_and_releases_the_lock(world: dict[str, Any]) -> None:
    workflow: RestoreWorkflow = world["workflow"]()
    before = table_rows(world["staging"])
    state = workflow.plan(workflow.lock(workflow.validate_artifact(workflow.resolve(request(dry_run=True), "e1"))))
    workflow.finish(state, "dry run")
    assert table_rows(world["staging"]) == before
    assert world["table"].holder("orders", "staging") is None
    assert (world["table"].audit("e1") or {})["plan"]["rows"]["orders"]["backup"] == 500


def test_the_lock_outlives_the_approval_wait(world: dict[str, Any]) -> None:
    workflow: RestoreWorkflow = world["workflow"](approval_timeout="2h")
    state = workflow.lock(workflow.resolve(request(), "e1"))
    held = world["table"].holder("orders", "staging") or {}
    assert held["owner"] == "e1" and state["lock"]["expires_at"]


# -- restore while a backup of the same database runs (the policy) ---------------------------------


def test_an_in_place_restore_waits_while_a_backup_of_the_source_runs(world: dict[str, Any], store: S3Store) -> None:
    # given a scheduled backup of orders holding its lock, and an approved in-place restore
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request(target="in-place"))
    before = world["source"].read_bytes()
    running = store.acquire_run_lock("orders", "backup-function", datetime.now(UTC), timedelta(hours=1))

    # when the restore reaches its safety snapshot, then it is refused for now, before anything destructive
    with pytest.raises(BackupAlreadyRunningError):
        workflow.safety_snapshot(state)
    assert world["source"].read_bytes() == before

    # and once the backup is done, the same step goes through (the state machine retries it)
    store.release_run_lock(running)
    assert workflow.safety_snapshot(state)["safety"] is not None


def test_no_backup_of_the_source_runs_while_it_is_restored_in_place(world: dict[str, Any], store: S3Store) -> None:
    # given an in-place restore past its safety snapshot
    workflow: RestoreWorkflow = world["workflow"]()
    state = workflow.safety_snapshot(until_approval(workflow, request(target="in-place")))

    # when the source's scheduled backup fires during the restore, then it is skipped, naming the restore
    with pytest.raises(BackupAlreadyRunningError) as skipped:
        run_backup(world["config"], store, at(22))
    assert f"restore {EXECUTION}" in str(skipped.value)

    # and once the restore is finished, the next backup runs
    workflow.finish(workflow.validate_target(workflow.restore(state)), "restored")
    assert run_backup(world["config"], store, at(22)).created


def test_a_failed_in_place_safety_snapshot_gives_the_source_lock_back(
    world: dict[str, Any], store: S3Store, tmp_path: Path
) -> None:
    # given an in-place restore whose safety snapshot cannot be taken (the source is not a database now)
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request(target="in-place"))
    world["source"].write_bytes(b"not a database at all" * 100)

    with pytest.raises(BackstopError):
        workflow.safety_snapshot(state)

    # then the source's backup lock is free again
    lock = store.acquire_run_lock("orders", "next-backup", datetime.now(UTC), timedelta(hours=1))
    store.release_run_lock(lock)


def test_a_target_that_did_not_exist_needs_no_rollback_unless_it_exists_now(world: dict[str, Any]) -> None:
    # given a restore into a staging target that does not exist yet (so no safety snapshot is taken)
    world["staging"].unlink()
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    state = workflow.safety_snapshot(state)
    assert state["safety"] is None

    # when the restore failed without writing it, the rollback has nothing to undo
    assert workflow.rollback(state)["rolled_back"] is True
    assert not world["staging"].exists()

    # but a target that appeared meanwhile cannot be put back to "absent" without a person
    create_orders_db(world["staging"], rows=3)
    with pytest.raises(RollbackFailedError, match="did not exist before the restore and now does"):
        workflow.rollback(state)


# -- the approval grant, checked again by every destructive step ------------------------------------

GRANT_CHANGES: dict[str, dict[str, Any]] = {
    "another execution": {"execution": f"{MACHINE.replace(':stateMachine:', ':execution:')}:exec-0002"},
    "another target": {"target": "in-place"},
    "another backup": {"backup_id": "orders-20261120T020000Z"},
    "another checksum": {"sha256": "0" * 64},
    "another artifact version": {"object_version": "not-the-pinned-version"},
    "another manifest version": {"manifest_version": "not-the-pinned-version"},
    "expired": {"expires_at": datetime.now(UTC) - timedelta(seconds=1)},
}


@pytest.mark.parametrize("step", ["safety_snapshot", "restore", "rollback"])
@pytest.mark.parametrize("grant", [*GRANT_CHANGES, "none", "sealed with another key"])
def test_a_destructive_step_refuses_a_grant_that_is_not_for_exactly_this(
    world: dict[str, Any], step: str, grant: str
) -> None:
    # given a restore past its approval, whose grant is then replaced
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    state = workflow.safety_snapshot(state) if step != "safety_snapshot" else state
    before = world["staging"].read_bytes()
    if grant == "none":
        replaced: dict[str, Any] = {}
    elif grant == "sealed with another key":
        replaced = grant_for(state, signer=LocalGrantSigner())
    else:
        replaced = grant_for(state, **GRANT_CHANGES[grant])

    # when the step runs with it
    with pytest.raises(ApprovalInvalidError, match="refused: no valid approval"):
        getattr(workflow, step)({**state, "approval": replaced})

    # then the target is untouched
    assert world["staging"].read_bytes() == before


@pytest.mark.parametrize("step", ["safety_snapshot", "restore", "rollback"])
def test_a_destructive_step_refuses_an_execution_that_does_not_hold_the_lock(world: dict[str, Any], step: str) -> None:
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    state = workflow.safety_snapshot(state) if step != "safety_snapshot" else state
    world["table"].release("orders", "staging", EXECUTION)
    world["table"].acquire("orders", "staging", "exec-other", datetime.now(UTC), timedelta(hours=1))
    before = world["staging"].read_bytes()
    with pytest.raises(ApprovalInvalidError, match="does not hold the lock"):
        getattr(workflow, step)(state)
    assert world["staging"].read_bytes() == before


def test_restore_refuses_without_this_execution_s_safety_snapshot(world: dict[str, Any]) -> None:
    # given an approved restore whose state claims no snapshot was needed, or names another restore's snapshot
    workflow: RestoreWorkflow = world["workflow"]()
    state = until_approval(workflow, request())
    other = workflow.safety_snapshot(until_approval(workflow, request(target="in-place"), "exec-other"))
    before = world["staging"].read_bytes()
    for safety, reason in ((None, "took no safety snapshot"), (other["safety"], "is not a safety snapshot of staging")):
        with pytest.raises(ApprovalInvalidError, match=reason):
            workflow.restore({**state, "safety": safety})
    assert world["staging"].read_bytes() == before


@pytest.mark.parametrize("name", ["drill-orders-20261121T020000Z", "refusal-20261121T020000Z-abc"])
def test_an_execution_may_not_take_the_name_of_a_drill_or_refusal_record(world: dict[str, Any], name: str) -> None:
    with pytest.raises(RestoreError, match="audit trail's own"):
        world["workflow"]().resolve(request(), name)
    assert world["table"].audit(name) is None


def test_point_in_time_never_picks_a_backup_dated_in_the_future(world: dict[str, Any], store: S3Store) -> None:
    # given a manifest written straight to the bucket dated in 2099 (a machine whose clock was wrong)
    commit_backup(store, "orders", datetime(2099, 1, 1, tzinfo=UTC))

    # when a restore asks for the newest backup before a time further ahead still
    resolved = world["workflow"]().resolve(request(backup={"before": "2100-01-01T00:00:00Z"}), "e1")

    # then it is the newest genuine backup, as `latest` would pick
    assert resolved["backup"]["backup_id"] == world["manifest"].backup_id


def ticking(start_ms: int, tick_ms: int) -> Callable[[], int]:
    """A step function's time left: ``start_ms`` (its timeout) at the first look, ``tick_ms`` less at each next one."""
    left = [start_ms]

    def remaining() -> int:
        now = left[0]
        left[0] = max(0, now - tick_ms)
        return now

    return remaining


def test_a_restore_step_stops_at_its_deadline_before_writing_and_the_rollback_finds_the_target_as_it_was(
    world: dict[str, Any],
) -> None:
    # given an approved restore into staging, its safety snapshot taken
    workflow: RestoreWorkflow = world["workflow"]()
    staging = world["staging"]
    state = workflow.safety_snapshot(until_approval(workflow, request()))
    before, beside = table_rows(staging), sorted(staging.parent.iterdir())

    # when the Restore step (a 60 s function whose clock moves 25 s a look) reaches its deadline downloading the backup
    step = workflow.within(Deadline(ticking(60_000, 25_000), remedy="restore it with `backstop restore`"))
    with pytest.raises(DeadlineExceededError) as stopped:
        step.restore(state)

    # then it stopped with a clean error, 10 s before Lambda would have ended it, and wrote nothing
    assert str(stopped.value) == (
        "The restore of orders into staging timed out after 50 s (the function's timeout is 60 s): "
        "restore it with `backstop restore`."
    )
    assert table_rows(staging) == before and sorted(staging.parent.iterdir()) == beside

    # when the state machine routes that error to Rollback, then to FinishRolledBack
    error = {"Error": DeadlineExceededError.__name__, "Cause": json.dumps({"errorMessage": str(stopped.value)})}
    state = workflow.rollback({**state, "error": error})
    workflow.finish(state, "rolled back", error)

    # then the target holds its data, its lock is free, and one alert says the step timed out
    assert table_rows(staging) == before
    assert world["table"].holder("orders", "staging") is None
    (alert,) = [m for _, m in world["notifier"].alerts if m["event"] == "restore_failed"]
    assert str(alert["reason"]).startswith("DeadlineExceededError: The restore of orders into staging timed out after")


def test_a_backup_whose_check_outlasts_its_step_is_not_taken_for_a_corrupt_one(
    world: dict[str, Any], store: S3Store
) -> None:
    # given an older backup, so that a restore of latest could fall back to it if the newest were corrupt
    run_backup(world["config"], store, at(20))
    workflow: RestoreWorkflow = world["workflow"]()
    state = workflow.resolve(request(), EXECUTION)

    # when ValidateArtifact reaches its deadline downloading the newest backup
    step = workflow.within(Deadline(ticking(60_000, 25_000), remedy="restore it with `backstop restore`"))
    with pytest.raises(DeadlineExceededError, match=f"Checking backup {world['manifest'].backup_id} timed out"):
        step.validate_artifact(state)

    # then no backup is called corrupt, and nothing was locked
    assert [m for _, m in world["notifier"].alerts if m["event"] == "backup_corrupt"] == []
    assert world["table"].holder("orders", "staging") is None


def drilled(store: S3Store, manifest: Any, seconds: float) -> None:
    """A passed drill of ``manifest`` that took ``seconds``, recorded beside it as the drill function records it."""
    store.put_sidecar(manifest, "drill", {"backup_id": manifest.backup_id, "passed": True, "seconds": seconds})


def test_a_restore_that_its_drills_say_cannot_finish_in_a_step_is_refused_before_approval(
    world: dict[str, Any], store: S3Store
) -> None:
    # given a drill of the backup that took 100 s, and the restore function's steps with a 60 s timeout (48 s to work)
    drilled(store, world["manifest"], 100)
    workflow = world["workflow"]().within(Deadline(lambda: 60_000, remedy="restore it with `backstop restore`"))
    state = workflow.lock(workflow.validate_artifact(workflow.resolve(request(), EXECUTION)))

    # when the plan is made, then the restore is refused there, saying why, before any approval is asked for
    with pytest.raises(RestoreTooLongError) as refused:
        workflow.plan(state)
    assert str(refused.value) == (
        f"The restore of orders into staging would take about 100 s at the speed the drill of "
        f"{world['manifest'].backup_id} measured, more than the 48 s a restore step has (its function's timeout is "
        "60 s); nothing was touched: restore it with `backstop restore`."
    )
    assert [m for _, m in world["notifier"].alerts if m["event"] == "restore_approval_requested"] == []


def test_a_restore_that_its_drills_say_fits_in_a_step_is_planned_with_their_estimate(
    world: dict[str, Any], store: S3Store
) -> None:
    # given a drill of the backup that took 30 s, and steps with a 60 s timeout (48 s to work)
    drilled(store, world["manifest"], 30)
    workflow = world["workflow"]().within(Deadline(lambda: 60_000, remedy="restore it with `backstop restore`"))
    state = workflow.lock(workflow.validate_artifact(workflow.resolve(request(), EXECUTION)))

    # when the plan is made, then it estimates by that drill
    plan = workflow.plan(state)["plan"]
    assert plan["estimated_seconds"] == 30
    assert plan["estimated_from"] == f"the drill of {world['manifest'].backup_id}"
