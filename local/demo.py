"""`make demo`: Backstop end to end on the embedded emulator, with no AWS account.

Backs up a SQLite database and a directory, lists and verifies them, damages a stored copy and
shows `verify` catching it, then restores and proves the restored data equals the original. Every
step runs the real `backstop` command against moto over HTTP, as an operator would, and the demo
exits non-zero if any outcome is not the expected one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from local.emulator import Emulator, child_env, flip_byte, running

console = Console(highlight=False)
BUCKET = "backstop-demo"


@dataclass
class DemoResult:
    """What the demo showed, for the summary table and the end-to-end test."""

    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)
    corrupt_verify_exit: int | None = None
    corrupt_verify_message: str = ""
    sqlite_equal: bool = False
    files_equal: bool = False
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(passed for _, passed, _ in self.steps)

    def record(self, step: str, passed: bool, detail: str) -> None:
        self.steps.append((step, passed, detail))
        mark = "[green]ok[/]" if passed else "[bold red]UNEXPECTED[/]"
        console.print(f"{mark} {step}: {detail}")


def create_sample_database(path: Path) -> None:
    """An online shop's database in WAL mode: customers, products, orders, order lines, migrations."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        """
        CREATE TABLE schema_migrations (version TEXT PRIMARY KEY, applied_at TEXT NOT NULL);
        CREATE TABLE customers (id INTEGER PRIMARY KEY, email TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
                                created_at TEXT NOT NULL);
        CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, title TEXT NOT NULL,
                               price_cents INTEGER NOT NULL CHECK (price_cents >= 0));
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
                             status TEXT NOT NULL, placed_at TEXT NOT NULL);
        CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES orders(id),
                                  product_id INTEGER NOT NULL REFERENCES products(id),
                                  quantity INTEGER NOT NULL, PRIMARY KEY (order_id, product_id));
        CREATE INDEX orders_by_customer ON orders(customer_id, placed_at);
        CREATE VIEW revenue AS SELECT o.id, sum(l.quantity * p.price_cents) AS cents
            FROM orders o JOIN order_lines l ON l.order_id = o.id JOIN products p ON p.id = l.product_id GROUP BY o.id;
        """
    )
    conn.executemany(
        "INSERT INTO schema_migrations VALUES (?, ?)",
        [("20250101000000", "2025-01-01"), ("20250601000000", "2025-06-01"), ("20261001000000", "2026-10-01")],
    )
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [(i, f"customer{i}@example.com", f"Customer {i}", f"2026-0{1 + i % 9}-1{i % 10}") for i in range(1, 5001)],
    )
    conn.executemany(
        "INSERT INTO products VALUES (?, ?, ?, ?)",
        [(i, f"SKU-{i:05d}", f"Product number {i}", 199 + (i * 37) % 10_000) for i in range(1, 501)],
    )
    conn.executemany(
        "INSERT INTO orders VALUES (?, ?, ?, ?)",
        [
            (i, 1 + i % 5000, ("paid", "shipped", "delivered")[i % 3], f"2026-11-{1 + i % 20:02d}")
            for i in range(1, 40_001)
        ],
    )
    conn.executemany(
        "INSERT INTO order_lines VALUES (?, ?, ?)",
        [(1 + i // 2, 1 + (i * 7) % 500, 1 + i % 4) for i in range(80_000)],
    )
    conn.commit()
    conn.close()


def create_sample_directory(path: Path) -> None:
    """Uploaded files: nested folders, a binary blob and a relative symlink inside the tree."""
    (path / "invoices" / "2026").mkdir(parents=True)
    (path / "avatars").mkdir()
    for i in range(1, 31):
        (path / "invoices" / "2026" / f"invoice-{i:04d}.txt").write_text(f"Invoice {i}\nTotal: {i * 12.5:.2f} EUR\n")
    (path / "avatars" / "default.png").write_bytes(bytes(range(256)) * 64)
    (path / "latest-invoice.txt").symlink_to("invoices/2026/invoice-0030.txt")


def logical_digest(db: Path) -> dict[str, str]:
    """Per-table SHA-256 of every row in primary-key order: equal digests mean equal data."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type='table' ORDER BY name")]
        digests = {}
        for table in tables:
            h = hashlib.sha256()
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1, 2'):  # names from sqlite_schema
                h.update(repr(row).encode())
            digests[table] = h.hexdigest()
        return digests
    finally:
        conn.close()


def tree_digest(root: Path) -> dict[str, str]:
    """Every file, directory and symlink under ``root`` with its content or link target."""
    entries = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            entries[rel] = "link:" + str(path.readlink())
        elif path.is_file():
            entries[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            entries[rel] = "dir"
    return entries


class Cli:
    """Runs `backstop` as a subprocess against the emulator, echoing each command."""

    def __init__(self, emulator: Emulator, config: Path) -> None:
        self._env = child_env(emulator, COLUMNS="110")
        self._config = config

    def __call__(self, *args: str, show: bool = True) -> subprocess.CompletedProcess[str]:
        console.print(f"[dim]$ backstop {' '.join(args)}[/]")
        done = subprocess.run(
            [sys.executable, "-m", "backstop.cli", "--config", str(self._config), *args],
            env=self._env,
            capture_output=True,
            text=True,
            check=False,
        )
        if show:
            for line in (done.stdout + done.stderr).rstrip().splitlines():
                console.print(f"  {line}", markup=False)
        return done


def run(workspace: Path) -> DemoResult:
    """Run the scenario in ``workspace`` (recreated) and return what it showed."""
    shutil.rmtree(workspace, ignore_errors=True)
    workspace.mkdir(parents=True)
    result = DemoResult()
    with running() as emulator:
        emulator.create_bucket(BUCKET)
        key_arn = emulator.create_key()
        topic, queue = emulator.create_alerts()
        db, files = workspace / "shop.db", workspace / "uploads"
        create_sample_database(db)
        create_sample_directory(files)
        config = workspace / "backstop.yaml"
        config.write_text(
            f"bucket: {BUCKET}\nprefix: backups\nkms_key_id: {key_arn}\nalerts_topic_arn: {topic}\n"
            f"work_dir: {workspace / 'tmp'}\n"
            "databases:\n"
            f"  - name: shop\n    engine: sqlite\n    path: {db}\n"
            "    schedule: cron(0 2 * * ? *)\n    stale_after: 26h\n"
            f"  - name: uploads\n    engine: files\n    path: {files}\n    compression: gzip\n"
        )
        (workspace / "tmp").mkdir()
        cli = Cli(emulator, config)
        console.print(Rule("Backstop demo: embedded AWS at " + emulator.endpoint))
        console.print(f"bucket s3://{BUCKET} (versioned, SSE-KMS {key_arn.rsplit('/', 1)[1][:8]}...), config {config}")

        console.print(Rule("1. Back up a SQLite database and a directory"))
        today = datetime.now(UTC).replace(hour=2, minute=0, second=0, microsecond=0)
        original_db, original_files = logical_digest(db), tree_digest(files)
        done = cli("backup", "shop", "--type", "scheduled", "--at", today.strftime("%Y-%m-%dT%H:%M:%SZ"))
        result.backups["shop"] = done.stdout.strip()
        result.record("backup shop (sqlite, zstd)", done.returncode == 0, result.backups["shop"])
        again = cli("backup", "shop", "--type", "scheduled", "--at", today.strftime("%Y-%m-%dT%H:%M:%SZ"))
        result.record(
            "same scheduled run delivered again", again.stdout.strip() == result.backups["shop"], "no second backup"
        )
        done = cli("backup", "uploads")
        result.backups["uploads"] = done.stdout.strip()
        result.record("backup uploads (directory, gzip)", done.returncode == 0, result.backups["uploads"])

        console.print(Rule("2. List and inspect"))
        cli("list", "shop")
        shown = json.loads(cli("show", "shop", result.backups["shop"], "--json", show=False).stdout)
        result.record(
            "manifest",
            shown["integrity"]["passed"],
            f"{shown['object']['size']} bytes stored, {shown['raw']['size']} raw, tier {shown['retention_tier']}, "
            f"sha256 {shown['object']['sha256'][:16]}..., {sum(t['rows'] for t in shown['tables'].values())} rows",
        )

        console.print(Rule("3. Verify, then damage a copy and verify again"))
        done = cli("verify", "shop", "latest")
        result.record("verify shop latest", done.returncode == 0, "size, SHA-256, manifest, integrity_check, rows")
        copy = cli("backup", "shop", "--type", "manual", "--json", show=False)
        copy_manifest = json.loads(copy.stdout)
        result.backups["shop-copy"] = copy_manifest["backup_id"]
        console.print(f"  second backup {copy_manifest['backup_id']}; flipping one byte of its stored object")
        flip_byte(BUCKET, copy_manifest["object"]["key"], copy_manifest["object"]["version_id"], offset=4096)
        done = cli("verify", "shop", copy_manifest["backup_id"])
        result.corrupt_verify_exit = done.returncode
        result.corrupt_verify_message = done.stderr.strip()
        result.record(
            "verify catches the damaged copy", done.returncode == 1, done.stderr.strip().removeprefix("error: ")
        )
        done = cli("restore", "shop", copy_manifest["backup_id"], "--to", str(db), "--yes")
        result.record(
            "restore refuses the damaged copy",
            done.returncode == 1 and logical_digest(db) == original_db,
            "target untouched",
        )

        console.print(Rule("4. Lose data, restore, compare"))
        with sqlite3.connect(db) as conn:
            conn.execute("DELETE FROM order_lines WHERE order_id > 100")
            conn.execute("UPDATE products SET price_cents = 0")
        console.print("  deleted most order lines and zeroed every price")
        result.record("data changed", logical_digest(db) != original_db, "shop.db no longer matches the backup")
        done = cli("restore", "shop", result.backups["shop"], "--to", str(db), "--yes")
        result.sqlite_equal = logical_digest(db) == original_db
        result.record(
            "restore shop in place",
            done.returncode == 0 and result.sqlite_equal,
            "every table equal to the original, pre-restore copy kept",
        )
        restored_files = workspace / "uploads-restored"
        done = cli("restore", "uploads", "latest", "--to", str(restored_files), "--yes")
        result.files_equal = tree_digest(restored_files) == original_files
        result.record(
            "restore uploads to a new path",
            done.returncode == 0 and result.files_equal,
            f"{len(original_files)} entries equal, symlink kept",
        )

        console.print(Rule("5. Stats and freshness"))
        cli("stats")
        done = cli("freshness")
        result.record("freshness", done.returncode == 0, "every database has a backup newer than stale_after")
        result.alerts = emulator.read_alerts(queue)
        leftovers = list((workspace / "tmp").iterdir())
        result.record("no temporary files left", not leftovers, f"{len(leftovers)} entries in work_dir")
    return result


def main() -> None:
    workspace = Path(".local/demo").resolve()
    result = run(workspace)
    console.print(Rule("Summary"))
    table = Table("step", "result", "detail")
    for step, passed, detail in result.steps:
        table.add_row(step, "[green]ok[/]" if passed else "[bold red]UNEXPECTED[/]", detail)
    console.print(table)
    console.print(f"Workspace: {workspace} (databases, config). Run `make test` for every check.")
    sys.exit(0 if result.ok else 1)


if __name__ == "__main__":
    main()
