"""Shared fixtures: an in-process moto S3 (versioned bucket), configs, and real SQLite databases."""

from __future__ import annotations

import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from backstop.adapters.s3_store import MIB, S3Store
from backstop.config import Config, parse_config

BUCKET = "backstop-test"
REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, and nothing that could reach a real account or a stray endpoint."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "BACKSTOP_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture(autouse=True)
def private_temp_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test its own system temp dir: xdist workers run tests of same-named databases side by side,
    and a run's leftover clean-up must only ever see its own test's directories."""
    path = tmp_path_factory.mktemp("systmp")
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    monkeypatch.setenv("TMPDIR", str(path))


@pytest.fixture
def s3() -> Iterator[Any]:
    """A moto S3 client with the versioned test bucket."""
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        yield client


@pytest.fixture
def store(s3: Any) -> S3Store:
    """The real S3 adapter on moto, with the smallest part size S3 allows so tests exercise several parts."""
    return S3Store(s3, bucket=BUCKET, prefix="backups", part_size=5 * MIB, concurrency=3)


@pytest.fixture
def work_dir(tmp_path: Path) -> Path:
    """The per-run temporary space of the services under test (checked for leftovers)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def make_config(tmp_path: Path, work_dir: Path) -> Callable[..., Config]:
    """Build a validated Config from database entries (dicts as in backstop.yaml)."""

    def build(*databases: dict[str, Any], **top: Any) -> Config:
        data = {"bucket": BUCKET, "prefix": "backups", "work_dir": str(work_dir), **top, "databases": list(databases)}
        return parse_config(yaml.safe_dump(data))

    return build


def create_orders_db(path: Path, rows: int = 1000, *, wal: bool = True) -> Path:
    """A realistic small SQLite database: customers, orders with a foreign key, an index, a view, migrations."""
    conn = sqlite3.connect(path)
    if wal:
        conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE);
        CREATE TABLE orders (
            id INTEGER PRIMARY KEY,
            customer_id INTEGER NOT NULL REFERENCES customers(id),
            amount_cents INTEGER NOT NULL,
            note TEXT
        );
        CREATE INDEX orders_customer ON orders(customer_id);
        CREATE VIEW order_totals AS SELECT customer_id, sum(amount_cents) AS total FROM orders GROUP BY customer_id;
        CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);
        INSERT INTO schema_migrations VALUES ('20260101000000'), ('20260315120000');
        """
    )
    conn.executemany(
        "INSERT INTO customers (id, name, email) VALUES (?, ?, ?)",
        [(i, f"customer {i}", f"c{i}@example.com") for i in range(1, 101)],
    )
    conn.executemany(
        "INSERT INTO orders (customer_id, amount_cents, note) VALUES (?, ?, ?)",
        [(1 + i % 100, 100 + i, f"order {i} " + "x" * (i % 50)) for i in range(rows)],
    )
    conn.commit()
    conn.close()
    return path


@pytest.fixture
def orders_db(tmp_path: Path) -> Path:
    return create_orders_db(tmp_path / "orders.db")


def table_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, ordered: the logical content to compare before and after a restore."""
    conn = sqlite3.connect(path)
    try:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY 1').fetchall() for n in names}
    finally:
        conn.close()
