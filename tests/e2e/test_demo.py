"""`make demo`'s scenario, asserted on its outcomes (not on its printed text)."""

from __future__ import annotations

from pathlib import Path

import pytest

from local.demo import run

pytestmark = pytest.mark.xdist_group("emulator")


def test_demo_runs_the_whole_system_on_the_emulator(tmp_path: Path) -> None:
    result = run(tmp_path / "demo")

    assert result.ok, [step for step in result.steps if not step[1]]
    # the stack came from its template; what moto cannot run is named, not silently missing
    assert "AWS::Scheduler::Schedule" in result.skipped_resources
    assert "AWS::Lambda::Function" not in result.skipped_resources
    # scheduled backups of every database, PostgreSQL included (the machine runs it)
    assert result.postgres
    assert set(result.backups) == {"shop", "uploads", "ledger"}
    assert result.corrupt_verify_exit == 1
    # the drill restored the scheduled backup for real; the sweep found the damaged copy by itself
    assert result.drill["passed"] is True and result.drill["backup_id"] == result.backups["shop"]
    assert len(result.sweep["corrupt"]) == 1 and result.sweep["checked"] >= 4
    # freshness: silent on time, one alert per stale database two days later
    assert result.fresh_alerts == []
    stale = [a["message"] for a in result.stale_alerts]
    assert {m["database"] for m in stale} == {"shop", "uploads", "ledger"}
    # the approved restore: the plan named the backup, the data equals it again
    assert result.plan["backup_id"] == result.backups["shop"]
    assert result.plan["confirmation"] == f"RESTORE {result.backups['shop']}"
    assert result.approved_status == "SUCCEEDED" and result.sqlite_equal
    # four eyes with identities from AWS: alice could not approve her own request, bob's approval is recorded
    assert "SameApproverError" in result.self_approval and "user/alice" in result.self_approval
    assert "UnverifiedRequesterError" in result.console_approval
    assert "user/bob" in result.grant and result.backups["shop"] in result.grant
    # the failed restore: rolled back to the target's own data, nothing left locked
    assert result.rollback_error == "RestoreRolledBack" and result.staging_kept
    assert result.lock_free
    outcomes = {a["execution"]: a["outcome"] for a in result.audits}
    drills = {name: outcome for name, outcome in outcomes.items() if name.startswith("drill-shop-")}
    assert list(drills.values()) == ["drill passed"]  # the drill left its audit record too
    assert {k: v for k, v in outcomes.items() if k not in drills} == {
        "demo-restore-shop": "restored",
        "demo-console-staging": "not restored",
        "demo-refresh-staging": "rolled back",
    }
    restored = next(a for a in result.audits if a["execution"] == "demo-restore-shop")
    assert restored["requester"]["verified"] is True and restored["requester"]["arn"].endswith(":user/alice")
    assert restored["approver"].endswith(":user/bob")
    # the functions' output went to their log files, as it would to CloudWatch Logs
    logs = sorted(p.name for p in (tmp_path / "demo" / "logs").iterdir())
    assert any("restorefunction" in name for name in logs)
