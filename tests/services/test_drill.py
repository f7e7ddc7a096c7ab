"""Restore drills on real SQLite files and the real PostgreSQL server, with S3 and DynamoDB on moto.

Each failure case injects the fault the drill exists to find: a backup whose checksum is right but
whose database is broken, a validation query that no longer holds, a scratch place that is real.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
import zstandard

from backstop.adapters.restore_table import RestoreTable
from backstop.adapters.s3_store import S3Store
from backstop.config import Config
from backstop.errors import ConfigError
from backstop.services.drill import DrillService, DrillTargetError
from tests.conftest import REGION, create_orders_db
from tests.engines.test_mysql_engine import new_database as mysql_database  # noqa: F401 - the fixture
from tests.engines.test_postgres_engine import NAME, create_shop, new_database, postgres_entry  # noqa: F401
from tests.services import RecordingNotifier, at, corrupt_table, replace_artifact, run_backup
from tests.store.test_restore_table import create_table


def shop(path: Path, **extra: Any) -> dict[str, Any]:
    return {"name": "orders", "engine": "sqlite", "path": str(path), **extra}


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    path = tmp_path / "scratch"
    path.mkdir()
    return path


def drill_of(config: Config, store: S3Store, notifier: RecordingNotifier, **options: Any) -> DrillService:
    return DrillService(config, store, notifier, **options)


def test_a_good_backup_passes_its_drill_and_leaves_nothing_behind(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path, scratch: Path
) -> None:
    source = create_orders_db(tmp_path / "orders.db", rows=300)
    config = make_config(shop(source, drill={"path": str(scratch), "rto": "10m"}))
    manifest = run_backup(config, store, at(21)).manifest
    create_table(boto3.client("dynamodb", region_name=REGION))
    table = RestoreTable(boto3.client("dynamodb", region_name=REGION), "backstop-restores")
    notifier = RecordingNotifier()

    result = drill_of(config, store, notifier, table=table).run("orders")

    assert result.passed, result.detail
    assert result.backup_id == manifest.backup_id
    assert result.within_rto is True and result.rto_seconds == 600
    assert list(scratch.iterdir()) == []  # the restored copy is gone
    sidecar = store.get_sidecar(manifest.backup_id, "drill") or {}
    assert sidecar["passed"] is True and sidecar["backup_id"] == manifest.backup_id
    (audit,) = table.audits()
    assert audit["outcome"] == "drill passed" and audit["target"] == "drill"
    assert notifier.alerts == []


def test_a_backup_with_a_broken_database_behind_a_good_checksum_fails_the_drill(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path, scratch: Path
) -> None:
    # given a committed backup rewritten consistently (object and manifest agree) around a damaged database
    source = create_orders_db(tmp_path / "orders.db", rows=2000, wal=False)
    config = make_config(shop(source, drill={"path": str(scratch)}))
    manifest = run_backup(config, store, at(21)).manifest
    broken = tmp_path / "broken.db"
    broken.write_bytes(source.read_bytes())
    corrupt_table(broken)
    raw = broken.read_bytes()
    replace_artifact(s3, store, manifest, zstandard.compress(raw), raw=raw)
    notifier = RecordingNotifier()

    # when it is drilled
    result = drill_of(config, store, notifier).run("orders")

    # then the engine's integrity check fails it, an alert names the backup, the sidecar records it
    assert not result.passed
    assert "integrity_check" in result.detail
    ((subject, alert),) = notifier.alerts
    assert "drill of orders failed" in subject and alert["backup_id"] == manifest.backup_id
    assert (store.get_sidecar(manifest.backup_id, "drill") or {})["passed"] is False
    assert list(scratch.iterdir()) == []


def test_a_drill_whose_validation_query_fails_fails(
    make_config: Any, store: S3Store, tmp_path: Path, scratch: Path
) -> None:
    # given a backup taken before an invariant was added, which the backup does not satisfy
    source = create_orders_db(tmp_path / "orders.db", rows=50)
    run_backup(make_config(shop(source)), store, at(21))
    stricter = make_config(
        shop(source, drill={"path": str(scratch)}, validation_queries=["SELECT count(*) FROM orders WHERE id < 0"])
    )
    notifier = RecordingNotifier()

    result = drill_of(stricter, store, notifier).run("orders")

    assert not result.passed
    assert "fails the validation query" in result.detail
    assert notifier.alerts and notifier.alerts[0][1]["event"] == "drill_failed"


def test_a_drill_target_pointing_at_the_source_is_refused_even_past_the_config(
    make_config: Any, store: S3Store, tmp_path: Path
) -> None:
    source = create_orders_db(tmp_path / "orders.db", rows=20)
    config = make_config(shop(source))
    run_backup(config, store, at(21))
    before = source.read_bytes()
    # the configuration refuses it where it is written ...
    with pytest.raises(ConfigError, match="overlaps the database's own path"):
        make_config(shop(source, drill={"path": str(tmp_path)}))
    # ... and a configuration built around that check is refused again when the drill runs
    db = config.databases[0]
    assert db.drill is not None
    sneaky = db.model_copy(update={"drill": db.drill.model_copy(update={"path": tmp_path})})
    config = config.model_copy(update={"databases": (sneaky,)})
    with pytest.raises(DrillTargetError, match="would restore into the database itself"):
        drill_of(config, store, RecordingNotifier()).run("orders")
    assert source.read_bytes() == before


def test_random_pick_chooses_among_the_newest_backups(make_config: Any, store: S3Store, tmp_path: Path) -> None:
    source = create_orders_db(tmp_path / "orders.db", rows=20)
    config = make_config(shop(source, drill={"pick": "random", "among": 2}))
    ids = [run_backup(config, store, at(day)).manifest.backup_id for day in (19, 20, 21)]
    offered: list[list[str]] = []

    def oldest(candidates: list[str]) -> str:
        offered.append(candidates)
        return candidates[-1]

    result = drill_of(config, store, RecordingNotifier(), chooser=oldest).run("orders")

    assert offered == [[ids[2], ids[1]]]  # the newest two, never the third
    assert result.backup_id == ids[1] and result.passed


@pytest.mark.xdist_group("postgres")
def test_a_postgres_drill_restores_into_a_scratch_database_and_drops_it(
    make_config: Any,
    store: S3Store,
    new_database: Any,  # noqa: F811 - the fixture
) -> None:
    from tests.engines.test_postgres_restore import databases_like

    source = new_database()
    create_shop(source, orders=200)
    # the scratch server is the same local server under another name: the check compares configured names
    config = make_config(postgres_entry(source, drill={"server": {"host": "localhost", "user": "postgres"}}))
    manifest = run_backup(config, store, at(21), database=NAME).manifest
    notifier = RecordingNotifier()

    result = drill_of(config, store, notifier).run(NAME)

    assert result.passed, result.detail
    assert result.backup_id == manifest.backup_id
    assert f"{source}_drill_" in result.scratch
    assert databases_like(f"{source}_drill_") == []  # always dropped
    assert notifier.alerts == []


def test_only_a_passed_drill_becomes_the_last_successful_one(
    make_config: Any, store: S3Store, s3: Any, tmp_path: Path, scratch: Path
) -> None:
    source = create_orders_db(tmp_path / "orders.db", rows=100, wal=False)
    config = make_config(shop(source, drill={"path": str(scratch)}))
    manifest = run_backup(config, store, at(21)).manifest
    passed = drill_of(config, store, RecordingNotifier()).run("orders")
    assert (store.last_drill_success("orders") or {})["started_at"] == passed.started_at.isoformat()

    # a later drill of a broken backup leaves the last success where it was
    broken = tmp_path / "broken.db"
    broken.write_bytes(source.read_bytes())
    corrupt_table(broken)
    raw = broken.read_bytes()
    replace_artifact(s3, store, manifest, zstandard.compress(raw), raw=raw)
    assert not drill_of(config, store, RecordingNotifier()).run("orders").passed
    assert (store.last_drill_success("orders") or {})["started_at"] == passed.started_at.isoformat()


@pytest.mark.xdist_group("mysql")
def test_a_mysql_drill_restores_into_a_scratch_database_and_drops_it(
    make_config: Any,
    store: S3Store,
    mysql_database: Any,  # noqa: F811 - the fixture
) -> None:
    from tests.engines.test_mysql_engine import build_shop, query, shop_config

    source = mysql_database()
    build_shop(source, orders=100)
    # the scratch server is the local server under another name: the check compares configured names
    config = shop_config(make_config, source, drill={"server": {"host": "localhost", "user": "root"}})
    manifest = run_backup(config, store, at(21), database="shop").manifest
    notifier = RecordingNotifier()

    result = drill_of(config, store, notifier).run("shop")

    assert result.passed, result.detail
    assert result.backup_id == manifest.backup_id
    assert f"{source}_drill_" in result.scratch
    left = query("information_schema", f"SELECT schema_name FROM schemata WHERE schema_name LIKE '{source}\\_%'")
    assert left == []  # the scratch database and anything derived from it are gone
    assert notifier.alerts == []


def test_the_default_scratch_space_may_hold_the_source_the_drill_writes_only_its_own_directory(
    make_config: Any, store: S3Store, tmp_path: Path
) -> None:
    # given a source inside the work space the drill defaults to (as /tmp holds a demo's files)
    work = tmp_path / "work-with-source"
    work.mkdir()
    source = create_orders_db(work / "orders.db", rows=30)
    config = make_config(shop(source), work_dir=str(work))
    run_backup(config, store, at(21))
    before = source.read_bytes()

    result = drill_of(config, store, RecordingNotifier()).run("orders")

    assert result.passed, result.detail
    assert source.read_bytes() == before
    assert not [p for p in work.iterdir() if p.name.startswith("backstop-drill")]  # its own directory, removed
