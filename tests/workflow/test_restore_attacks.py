"""Issue 12's attacks on restore authorization, each played against the local system with an attacker's tools.

The synthesized stack stood up on the emulator, its functions run in-process. The attacker holds
what ordinary IAM access gives: ``lambda:InvokeFunction`` on Backstop's functions, the execution
history (so the task token), ``states:SendTaskSuccess``, write access to the vault's manifests, and
credentials of their own. Every test asserts what a person would notice: the target's bytes or
rows, the audit record, the alert.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backstop.grants import GrantClaims, LocalGrantSigner, seal
from backstop.manifest import Manifest, Trigger
from backstop.services.backup import BackupRequest, BackupService
from local.principals import role_sessions, user_session
from tests.conftest import table_rows
from tests.workflow.test_state_machine import BUCKET, World, build_world, sample

pytestmark = pytest.mark.xdist_group("emulator")

REFUSED = "refused: no valid approval"


@pytest.fixture
def world(paths: dict[str, Path]) -> Iterator[World]:
    yield from build_world(paths)


@pytest.fixture
def four_eyes(paths: dict[str, Path]) -> Iterator[World]:
    yield from build_world(paths, restore={"distinct_approver": True})


def refusals(world: World) -> list[dict[str, Any]]:
    return [r for r in world.table.audits(100) if str(r["execution"]).startswith("refusal-")]


def events(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["message"]["event"] for a in alerts]


def backup_summary(world: World) -> dict[str, Any]:
    backup_id = world.store.newest_backup_id("orders")
    assert backup_id
    manifest, version = world.store.pinned_manifest(backup_id)
    return {
        "backup_id": backup_id,
        "key": manifest.object.key,
        "sha256": manifest.object.sha256,
        "object_version": manifest.object.version_id,
        "manifest_version": version,
    }


def forged_grant(execution_arn: str, backup: dict[str, Any], target: str = "staging") -> dict[str, Any]:
    """The best an attacker can do without the approval key: a well-formed grant sealed with a key of their own."""
    now = datetime.now(UTC)
    claims = GrantClaims(
        execution=execution_arn,
        database="orders",
        target=target,
        backup_id=backup["backup_id"],
        sha256=backup["sha256"],
        object_version=backup["object_version"],
        manifest_version=backup["manifest_version"],
        approver="user:AIDAMALLORY",
        approver_arn="arn:aws:iam::123456789012:user/mallory",
        requester=None,
        approved_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return seal(claims, LocalGrantSigner()).model_dump(mode="json")


def crafted_state(world: World, execution: str) -> dict[str, Any]:
    backup = backup_summary(world)
    return {
        "execution": execution,
        "database": "orders",
        "engine": "sqlite",
        "target": "staging",
        "dry_run": False,
        "requested_by": "mallory",
        "backup": backup,
        "latest": False,
        "lock": {"owner": execution, "expires_at": None},
        "safety": None,
        "approval": {"grant": forged_grant(world.execution_arn(execution), backup)},
        "timings": {},
    }


# -- 1. direct invoke -----------------------------------------------------------------------------


@pytest.mark.parametrize("step", ["safety_snapshot", "restore", "rollback", "finish"])
def test_a_direct_invoke_of_a_step_with_hand_made_state_changes_nothing(
    world: World, paths: dict[str, Path], step: str
) -> None:
    # given a target and a hand-made payload naming an execution nobody started
    before = paths["staging"].read_bytes()
    payload = {
        "step": step,
        "execution": world.execution_arn("nobody-approved"),
        "state": crafted_state(world, "nobody-approved"),
        "outcome": "restored",
    }

    # when the attacker invokes the restore function with it
    ok, body = world.invoke(world.restore_function, payload)

    # then the step is refused, the target's bytes are the same, and the refusal is audited and alerted
    assert not ok and body["errorType"] == "UnauthorizedStepError", body
    assert "no execution" in body["errorMessage"]
    assert paths["staging"].read_bytes() == before
    assert not (paths["staging"].parent / "staging.db.pre-restore").exists()
    (refusal,) = refusals(world)
    assert refusal["outcome"] == REFUSED and refusal["step"] == step
    assert refusal["claimed_execution"] == payload["execution"] and refusal["target"] == "staging"
    (alert,) = world.alerts(at_least=1)
    assert alert["message"]["event"] == "restore_step_refused" and alert["message"]["step"] == step
    assert "nobody-approved" in alert["message"]["claimed_execution"]
    assert world.store.newest_backup_id("orders-pre-restore-staging") is None


def test_finish_cannot_release_the_lock_of_another_running_restore(world: World, paths: dict[str, Path]) -> None:
    # given a restore waiting for approval, holding the staging lock
    arn = world.start(sample("latest-to-staging.json"), "run-victim")
    world.wait_for_approval("run-victim")
    world.alerts(at_least=1)

    # when the attacker invokes finish (and restore) for that execution, with its own state
    state = {**crafted_state(world, "run-victim"), "lock": {"owner": "run-victim", "expires_at": None}}
    finish = {"step": "finish", "execution": arn, "state": state, "outcome": "not restored"}
    restore = {"step": "restore", "execution": arn, "state": state}
    results = [world.invoke(world.restore_function, p) for p in (finish, restore)]

    # then both are refused because the execution is waiting in Approval; the lock is still the victim's
    for ok, body in results:
        assert not ok and body["errorType"] == "UnauthorizedStepError" and "in state Approval" in body["errorMessage"]
    assert (world.table.holder("orders", "staging") or {})["owner"] == "run-victim"
    assert [r["step"] for r in refusals(world)] == ["restore", "finish"]  # newest first
    assert events(world.alerts(at_least=2)) == ["restore_step_refused"] * 2
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"


def test_replaying_a_finished_restore_s_own_payload_changes_nothing(world: World, paths: dict[str, Path]) -> None:
    # given a restore that ran to the end, and staging changed by its users afterwards
    arn = world.start(sample("latest-to-staging.json"), "run-done")
    world.wait_for_approval("run-done")
    world.approve("run-done", f"RESTORE {world.table.pending('run-done').backup_id}")
    assert world.wait(arn)["status"] == "SUCCEEDED"
    with sqlite3.connect(paths["staging"]) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    after_users = table_rows(paths["staging"])
    scheduled = [
        json.loads(e["lambdaFunctionScheduledEventDetails"]["input"])
        for e in world.history(arn)
        if "lambdaFunctionScheduledEventDetails" in e
    ]
    replay = next(p for p in scheduled if p["step"] == "restore")

    # when the attacker replays exactly what Step Functions sent to the Restore state (a valid grant inside)
    ok, body = world.invoke(world.restore_function, replay)

    # then it is refused: the execution is no longer running
    assert not ok and body["errorType"] == "UnauthorizedStepError" and "SUCCEEDED" in body["errorMessage"]
    assert table_rows(paths["staging"]) == after_users
    assert refusals(world)[0]["step"] == "restore"


# -- 2. stolen task token -------------------------------------------------------------------------


@pytest.mark.parametrize("forgery", ["empty", "old style", "forged grant"])
def test_a_stolen_task_token_cannot_approve_a_restore(world: World, paths: dict[str, Path], forgery: str) -> None:
    # given a restore waiting for approval, and its task token read from the execution history
    before = paths["staging"].read_bytes()
    arn = world.start(sample("latest-to-staging.json"), "run-stolen")
    world.wait_for_approval("run-stolen")
    token = world.token(arn)
    output = {
        "empty": {},
        "old style": {"approved_by": "bob"},
        "forged grant": {"grant": forged_grant(arn, backup_summary(world))},
    }[forgery]

    # when the attacker completes the wait with it
    world.send_success(token, output)
    described = world.wait(arn)

    # then the execution fails at CheckApproval with the target untouched, the lock free, no approver recorded
    assert described["status"] == "FAILED" and described["error"] == "RestoreFailed"
    entered = [e["stateEnteredEventDetails"]["name"] for e in world.history(arn) if "stateEnteredEventDetails" in e]
    assert entered[-3:] == ["CheckApproval", "FinishNotRestored", "NotRestored"]
    assert paths["staging"].read_bytes() == before
    assert world.table.holder("orders", "staging") is None
    audit = world.table.audit("run-stolen") or {}
    assert audit["outcome"] == REFUSED and "ApprovalInvalidError" in audit["failure_reason"]
    assert audit.get("approver") is None and "safety_snapshot" not in audit
    with pytest.raises(Exception, match="No approval is pending"):
        world.table.pending("run-stolen")  # the approval item does not stay behind
    alerts = world.alerts(at_least=2)
    last = alerts[-1]["message"]
    assert last["event"] == "restore_failed" and last["outcome"] == REFUSED and "refused" in last["reason"]
    # and the token was never in the restore table or an alert: only the history holds it, where it authorized nothing
    items = world.emulator.client("dynamodb").scan(TableName=world.table.table)["Items"]
    assert token not in json.dumps(items) and token not in json.dumps(alerts)


def test_a_real_grant_replayed_on_another_execution_is_refused(world: World, paths: dict[str, Path]) -> None:
    # given a restore that bob approved and that ran, whose grant is in its history
    first = world.start(sample("latest-to-staging.json"), "run-granted")
    world.wait_for_approval("run-granted")
    world.approve("run-granted", f"RESTORE {world.table.pending('run-granted').backup_id}")
    assert world.wait(first)["status"] == "SUCCEEDED"
    grant = next(
        json.loads(e["taskSucceededEventDetails"]["output"])["grant"]
        for e in world.history(first)
        if "taskSucceededEventDetails" in e
    )
    with sqlite3.connect(paths["staging"]) as conn:
        conn.execute("DELETE FROM orders WHERE id > 10")
    before = table_rows(paths["staging"])

    # when a second restore of the same target and backup is answered with that grant through its stolen token
    second = world.start(sample("latest-to-staging.json"), "run-replayed")
    world.wait_for_approval("run-replayed")
    world.send_success(world.token(second), {"grant": grant})

    # then it is refused: the grant names the first execution
    assert world.wait(second)["status"] == "FAILED"
    assert table_rows(paths["staging"]) == before
    audit = world.table.audit("run-replayed") or {}
    assert audit["outcome"] == REFUSED and "run-granted" in audit["failure_reason"]


# -- 3. verified identities, four eyes -------------------------------------------------------------


def test_four_eyes_requester_a_approver_b_restores(four_eyes: World, paths: dict[str, Path]) -> None:
    world = four_eyes
    arn = world.start(sample("latest-to-staging.json"), "run-ab", requester=world.alice)
    world.wait_for_approval("run-ab")
    backup_id = world.table.pending("run-ab").backup_id
    ok, body = world.answer("approve", "run-ab", world.alice, phrase=f"RESTORE {backup_id}")
    assert not ok and body["errorType"] == "SameApproverError"
    world.approve("run-ab", f"RESTORE {backup_id}", world.bob)
    assert world.wait(arn)["status"] == "SUCCEEDED"
    assert table_rows(paths["staging"]) == table_rows(paths["source"])
    audit = world.table.audit("run-ab") or {}
    assert audit["requester"]["verified"] is True and audit["requester"]["arn"].endswith(":user/alice")
    assert audit["approver"].endswith(":user/bob")
    assert "restore_approval_refused" in events(world.alerts(at_least=3))


@pytest.mark.parametrize("principal", ["two access keys of one user", "two sessions of one role"])
def test_four_eyes_refuses_the_requester_approving_under_another_session(
    four_eyes: World, paths: dict[str, Path], principal: str
) -> None:
    # given one principal with two sets of credentials (the second session named to look like someone else)
    world = four_eyes
    if principal == "two access keys of one user":
        first = user_session(world.emulator, "carol")
        key = world.emulator.client("iam").create_access_key(UserName="carol")["AccessKey"]
        import boto3

        second = boto3.Session(
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"], region_name="us-east-1"
        )
    else:
        first, second = role_sessions(world.emulator, "oncall", "carol", "dave")
    before = paths["staging"].read_bytes()

    # when the first requests and the second approves
    arn = world.start(sample("latest-to-staging.json"), "run-self", requester=first)
    world.wait_for_approval("run-self")
    ok, body = world.answer(
        "approve", "run-self", second, phrase=f"RESTORE {world.table.pending('run-self').backup_id}"
    )

    # then the approval is refused and the restore keeps waiting, the target untouched
    assert not ok and body["errorType"] == "SameApproverError", body
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert paths["staging"].read_bytes() == before
    alert = next(a["message"] for a in world.alerts(at_least=2) if a["message"]["event"] == "restore_approval_refused")
    assert alert["execution"] == "run-self" and "own restore" in alert["reason"]


def test_four_eyes_refuses_any_approval_of_an_unverified_console_request(four_eyes: World) -> None:
    world = four_eyes
    arn = world.start(sample("latest-to-staging.json"), "run-console")
    world.wait_for_approval("run-console")
    ok, body = world.answer(
        "approve", "run-console", world.bob, phrase=f"RESTORE {world.table.pending('run-console').backup_id}"
    )
    assert not ok and body["errorType"] == "UnverifiedRequesterError"
    assert "restore-request" in body["errorMessage"]
    assert (world.table.audit("run-console") or {})["requester"]["verified"] is False
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"


def test_a_requester_proof_made_for_another_execution_fails_the_restore(world: World, paths: dict[str, Path]) -> None:
    # given alice's proof for one execution, copied into the input of another
    from backstop.adapters.sts import sign_proof

    proof = sign_proof(
        "request", world.execution_arn("run-a"), session=world.alice, endpoint_url=world.emulator.endpoint
    )
    data = {**sample("latest-to-staging.json"), "identity": proof.model_dump()}
    before = paths["staging"].read_bytes()

    described = world.wait(world.start(data, "run-b"))

    assert described["status"] == "FAILED"
    assert paths["staging"].read_bytes() == before
    audit = world.table.audit("run-b") or {}
    assert audit["outcome"] == "not restored" and "IdentityProofError" in audit["failure_reason"]


def test_an_approval_proof_cannot_be_replayed_for_another_action(world: World) -> None:
    from backstop.adapters.sts import sign_proof

    arn = world.start(sample("latest-to-staging.json"), "run-proof")
    world.wait_for_approval("run-proof")
    proof = sign_proof("reject", arn, session=world.bob, endpoint_url=world.emulator.endpoint).model_dump()
    phrase = f"RESTORE {world.table.pending('run-proof').backup_id}"
    ok, body = world.invoke(
        world.approval_function, {"action": "approve", "execution": arn, "phrase": phrase, "identity": proof}
    )
    assert not ok and body["errorType"] == "IdentityProofError" and "one action only" in body["errorMessage"]
    assert world.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"


# -- 4. unbound manifests -------------------------------------------------------------------------


def _rewrite_manifest(world: World, manifest: Manifest) -> None:
    s3 = world.emulator.client("s3")
    s3.put_object(Bucket=BUCKET, Key=world.store.manifest_key(manifest.backup_id), Body=manifest.sealed().to_json())


def test_a_manifest_pointing_at_another_database_s_object_is_refused(world: World, paths: dict[str, Path]) -> None:
    # given a second database's backup in the vault, and a manifest under orders' prefix naming its object
    other = world.store.get_manifest(world.store.newest_backup_id("orders") or "")
    foreign_key = other.object.key.replace("/orders/", "/billing/").replace("orders-", "billing-")
    world.emulator.client("s3").copy_object(
        Bucket=BUCKET, Key=foreign_key, CopySource={"Bucket": BUCKET, "Key": other.object.key}
    )
    planted_id = "orders-20261122T020000Z"
    planted = other.model_copy(
        update={"backup_id": planted_id, "object": other.object.model_copy(update={"key": foreign_key})}
    )
    _rewrite_manifest(world, planted)
    before = paths["staging"].read_bytes()

    # when a restore of that backup is started
    described = world.wait(world.start(sample("latest-to-staging.json", backup=planted_id), "run-foreign"))

    # then it fails at Resolve, naming the foreign key; the target is untouched; audited and alerted
    assert described["status"] == "FAILED"
    assert paths["staging"].read_bytes() == before
    audit = world.table.audit("run-foreign") or {}
    assert audit["outcome"] == "not restored" and "ManifestError" in audit["failure_reason"]
    assert "billing" in audit["failure_reason"]
    assert world.alerts(at_least=1)[-1]["message"]["event"] == "restore_failed"


def test_a_manifest_swapped_after_approval_is_not_what_gets_restored(world: World, paths: dict[str, Path]) -> None:
    # given a restore of the nightly backup waiting for approval
    approved_backup = world.store.newest_backup_id("orders") or ""
    approved_rows = table_rows(paths["source"])
    arn = world.start(sample("latest-to-staging.json", backup=approved_backup), "run-swap")
    world.wait_for_approval("run-swap")

    # and, meanwhile, an attacker writes other bytes and a matching, well-sealed manifest over that backup's keys
    with sqlite3.connect(paths["source"]) as conn:
        conn.execute("DELETE FROM orders WHERE id > 5")
    BackupService(world.config, world.store).run(
        BackupRequest("orders", datetime(2026, 11, 22, 2, tzinfo=UTC), "scheduled", Trigger(kind="user", by="t"))
    )
    evil = world.store.get_manifest("orders-20261122T020000Z")
    genuine = world.store.get_manifest(approved_backup)
    body = world.emulator.client("s3").get_object(Bucket=BUCKET, Key=evil.object.key)["Body"].read()
    put = world.emulator.client("s3").put_object(Bucket=BUCKET, Key=genuine.object.key, Body=body)
    swapped = evil.model_copy(
        update={
            "backup_id": approved_backup,
            "scheduled_for": genuine.scheduled_for,
            "object": evil.object.model_copy(update={"key": genuine.object.key, "version_id": put["VersionId"]}),
        }
    )
    _rewrite_manifest(world, swapped)

    # when bob approves the plan he was shown
    world.approve("run-swap", f"RESTORE {approved_backup}")

    # then staging holds exactly the approved bytes, not the swapped ones
    assert world.wait(arn)["status"] == "SUCCEEDED"
    assert table_rows(paths["staging"]) == approved_rows


def test_only_the_configured_approvers_may_approve(paths: dict[str, Path]) -> None:
    # given a deployment that names bob as its only approver
    for world in build_world(paths, restore={"approvers": ["arn:aws:iam::123456789012:user/bob"]}):
        carol = user_session(world.emulator, "carol")
        arn = world.start(sample("latest-to-staging.json"), "run-listed", requester=world.alice)
        world.wait_for_approval("run-listed")
        phrase = f"RESTORE {world.table.pending('run-listed').backup_id}"

        # when carol, who may invoke the approval function, approves with the right phrase
        ok, body = world.answer("approve", "run-listed", carol, phrase=phrase)

        # then she is refused and alerted on; bob's approval then restores
        assert not ok and body["errorType"] == "ApproverNotAllowedError" and "user/carol" in body["errorMessage"]
        alert = next(
            a["message"] for a in world.alerts(at_least=2) if a["message"]["event"] == "restore_approval_refused"
        )
        assert alert["tried_by"].endswith(":user/carol")
        ok, body = world.answer("reject", "run-listed", carol, reason="not mine to stop")
        assert not ok and body["errorType"] == "ApproverNotAllowedError"
        world.approve("run-listed", phrase, world.bob)
        assert world.wait(arn)["status"] == "SUCCEEDED"
        assert table_rows(paths["staging"]) == table_rows(paths["source"])
