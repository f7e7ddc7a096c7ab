"""app.py: the configuration comes from the CDK context, synthesis is offline, bad input is one sentence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from backstop.config import FilesDatabase, Retention, SqliteDatabase, load_config
from tests.infra import CDK_CONTEXT, EXAMPLE_CONFIG, ROOT, synthesize

pytestmark = pytest.mark.xdist_group("infra")


def run_app(context: dict[str, object], outdir: Path) -> subprocess.CompletedProcess[str]:
    """Run app.py the way `cdk synth` does: context and output directory in the environment."""
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_OUTDIR": str(outdir),
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "20",
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        env.pop(name, None)  # synthesis must not need credentials
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_example_configuration_is_valid() -> None:
    config = load_config(EXAMPLE_CONFIG)

    orders, uploads = config.databases
    assert isinstance(orders, SqliteDatabase)
    assert orders.name == "orders"
    assert orders.path == Path("/mnt/data/orders.db")
    assert orders.schedule == "cron(0 2 * * ? *)"
    assert orders.efs is not None
    assert orders.vpc is not None
    assert orders.stale_after == timedelta(hours=26)
    assert orders.retention == Retention(daily=7, weekly=4, monthly=12, yearly=3)
    assert orders.compression == "zstd"
    assert isinstance(uploads, FilesDatabase)
    assert uploads.name == "uploads"
    assert uploads.compression == "gzip"


def test_cdk_json_points_the_app_at_the_example_configuration() -> None:
    assert CDK_CONTEXT["config"] == "backstop.yaml"


def test_app_reads_the_configuration_named_in_the_context(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text(
        "bucket: other-backups\nprefix: db\ndatabases:\n"
        "  - {name: ledger, engine: postgres, host: db.internal, dbname: ledger, user: backstop}\n",
        encoding="utf-8",
    )

    synthesized = synthesize(other, tmp_path / "cdk.out")

    synthesized.template.has_resource_properties("AWS::S3::Bucket", {"BucketName": "other-backups"})
    synthesized.template.has_output("BucketName", {})


@pytest.mark.slow  # a fresh Node process and a first synthesis: about ten seconds
def test_app_synthesizes_offline_without_credentials(tmp_path: Path) -> None:
    result = run_app(CDK_CONTEXT, tmp_path)

    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "Backstop.template.json").read_text(encoding="utf-8"))
    assert "VaultBucket0925C477" in template["Resources"]


def test_app_reports_a_missing_configuration_in_one_sentence(tmp_path: Path) -> None:
    result = run_app({**CDK_CONTEXT, "config": str(tmp_path / "missing.yaml")}, tmp_path)

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"error: Configuration file {str(tmp_path / 'missing.yaml')!r} not found: pass `-c config=FILE` to cdk."
    ]


def test_app_refuses_a_database_a_deployed_function_cannot_reach_in_one_sentence(tmp_path: Path) -> None:
    local_only = tmp_path / "local.yaml"
    local_only.write_text(
        "bucket: other-backups\ndatabases:\n  - {name: ledger, engine: sqlite, path: /data/ledger.db}\n",
        encoding="utf-8",
    )

    result = run_app({**CDK_CONTEXT, "config": str(local_only)}, tmp_path)

    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: The configuration cannot be deployed: databases[0] (ledger): a sqlite database")
    assert "add efs" in line


def test_app_reports_an_invalid_configuration_in_one_sentence(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("bucket: Not_A_Bucket\ndatabases: []\n", encoding="utf-8")

    result = run_app({**CDK_CONTEXT, "config": str(broken)}, tmp_path)

    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {broken} is invalid: ")
    assert "bucket" in line
    assert "databases" in line
