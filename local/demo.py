"""`make demo`: the whole Backstop system on the embedded emulator, with no AWS account.

The stack is synthesized from the demo's backstop.yaml and stood up on moto from that template
(``local.system``); its functions and its restore state machine run here. The scenario:

1. sample databases: a SQLite shop with a migrations table, a directory of uploads, and a
   PostgreSQL database when the local server answers (skipped with a note otherwise);
2. scheduled backups, one "tick" per schedule with the exact input of the template, with their
   manifests, sizes, tiers and checksums; `backstop list` and `verify` against the same bucket;
3. a scheduled restore drill of the SQLite shop, and a verification sweep that finds the damaged copy;
4. the freshness check once on time (no alert) and once two days later (stale alerts);
5. data lost, a restore started as the console starts it, the plan read from the alerts topic,
   approved with `backstop approve --confirm "RESTORE <id>"`, and the data compared;
6. a restore that fails after its safety snapshot (an application writes to the target while it
   is restored) and is rolled back;
7. where everything lives, and how to go on with `make local`.

The demo exits non-zero if any outcome is not the expected one; tests/e2e/test_demo.py asserts
on the outcomes it returns.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console
from rich.rule import Rule
from rich.table import Table

from backstop.adapters.s3_store import S3Store
from backstop.config import parse_config
from local.emulator import flip_byte
from local.principals import environment_of, user_session
from local.system import LocalSystem, local_system

console = Console(file=sys.stdout, highlight=False)  # bound now: functions' output is routed away
BUCKET = "backstop-demo"
EVENTS = Path(__file__).resolve().parents[1] / "events"
PG_DATABASE = "backstop_demo_ledger"
PG_STAGING = "backstop_demo_ledger_staging"


@dataclass
class DemoResult:
    """What the demo showed, for the summary table and the end-to-end test."""

    steps: list[tuple[str, bool, str]] = field(default_factory=list)
    backups: dict[str, str] = field(default_factory=dict)
    skipped_resources: list[str] = field(default_factory=list)
    postgres: bool = False
    corrupt_verify_exit: int | None = None
    fresh_alerts: list[dict[str, Any]] = field(default_factory=list)
    stale_alerts: list[dict[str, Any]] = field(default_factory=list)
    plan: dict[str, Any] = field(default_factory=dict)
    approved_status: str = ""
    self_approval: str = ""
    """What `backstop approve` said when the requester tried to approve her own restore."""
    console_approval: str = ""
    """What it said to an approval of a console start (no verified requester) under four eyes."""
    grant: str = ""
    sqlite_equal: bool = False
    rollback_status: str = ""
    rollback_error: str = ""
    staging_kept: bool = False
    lock_free: bool = False
    audits: list[dict[str, Any]] = field(default_factory=list)
    drill: dict[str, Any] = field(default_factory=dict)
    sweep: dict[str, Any] = field(default_factory=dict)

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

    def __init__(self, system: LocalSystem, config: Path) -> None:
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
            **system.environment(),
            "COLUMNS": "110",
        }
        self._config = config

    def __call__(
        self, *args: str, show: bool = True, who: tuple[str, dict[str, str]] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `backstop ARGS`; ``who``: (name, credentials) of the person running it, else the operator's."""
        prompt = f"{who[0]}$" if who else "$"
        console.print(f"[dim]{prompt} backstop {' '.join(args)}[/]")
        done = subprocess.run(
            [sys.executable, "-m", "backstop.cli", "--config", str(self._config), *args],
            env={**self._env, **(who[1] if who else {})},
            capture_output=True,
            text=True,
            check=False,
        )
        if show:
            for line in (done.stdout + done.stderr).rstrip().splitlines():
                console.print(f"  {line}", markup=False)
        return done


# -- PostgreSQL, when the local server answers ----------------------------------------------------------


def _pg(dbname: str = "postgres") -> Any:
    import psycopg

    return psycopg.connect(
        host="127.0.0.1", port=5432, user="postgres", dbname=dbname, autocommit=True, connect_timeout=3
    )


def postgres_available() -> bool:
    try:
        with _pg() as conn:
            conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure to connect means: skip PostgreSQL
        return False
    return True


def create_postgres_sample() -> None:
    """A small ledger: accounts and transfers with a foreign key, and a migrations table."""
    with _pg() as conn:
        for name in (PG_DATABASE, PG_STAGING):
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    with _pg(PG_DATABASE) as conn:
        conn.execute("CREATE TABLE schema_migrations (version text PRIMARY KEY)")
        conn.execute("INSERT INTO schema_migrations VALUES ('20260101'), ('20261001')")
        conn.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL, balance_cents bigint NOT NULL)")
        conn.execute("INSERT INTO accounts SELECT i, 'owner ' || i, 100000 FROM generate_series(1, 2000) i")
        conn.execute(
            "CREATE TABLE transfers (id bigserial PRIMARY KEY, src int REFERENCES accounts,"
            " dst int REFERENCES accounts, cents bigint NOT NULL CHECK (cents > 0))"
        )
        conn.execute(
            "INSERT INTO transfers (src, dst, cents) SELECT 1 + i % 2000, 1 + (i * 7) % 2000, 1 + i % 5000"
            " FROM generate_series(1, 20000) i"
        )


def drop_postgres_sample() -> None:
    with _pg() as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'backstop_demo_ledger%'").fetchall()
        for (name,) in rows:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- the scenario ---------------------------------------------------------------------------------------


def write_config(workspace: Path, shop: Path, staging: Path, uploads: Path, postgres: bool) -> Path:
    databases = [
        {
            "name": "shop",
            "engine": "sqlite",
            "path": str(shop),
            "schedule": "cron(0 2 * * ? *)",
            "stale_after": "26h",
            "validation_queries": ["SELECT count(*) FROM schema_migrations"],
            "restore_targets": {"in-place": {}, "staging": {"path": str(staging)}},
        },
        {
            "name": "uploads",
            "engine": "files",
            "path": str(uploads),
            "schedule": "cron(30 2 * * ? *)",
            "stale_after": "26h",
            "compression": "gzip",
        },
    ]
    if postgres:
        databases.append(
            {
                "name": "ledger",
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": 5432,
                "dbname": PG_DATABASE,
                "user": "postgres",
                "schedule": "cron(0 3 * * ? *)",
                "stale_after": "26h",
                "restore_targets": {"staging": {"dbname": PG_STAGING}},
            }
        )
    document = {
        "bucket": BUCKET,
        "prefix": "backups",
        "work_dir": str(workspace / "tmp"),
        "restore": {"distinct_approver": True},  # four eyes: alice asks, bob approves
        "storage": {"object_lock": {"mode": "governance"}},  # each backup locked until its tier expires
        "databases": databases,
    }
    config = workspace / "backstop.yaml"
    config.write_text(json.dumps(document, indent=2))  # JSON is YAML
    return config


REQUEST = ("restore-request",)


def wait_for(system: LocalSystem, event: str, timeout: float = 60) -> dict[str, Any]:
    """The first alert of kind ``event`` (the alerts queue stands in for the e-mail subscribers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for alert in system.alerts():
            if alert["message"].get("event") == event:
                return alert
        time.sleep(0.2)
    raise TimeoutError(f"no {event} alert within {timeout:.0f} s")


def wait_until_done(system: LocalSystem, arn: str, timeout: float = 180) -> dict[str, Any]:
    sfn = system.emulator.client("stepfunctions")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.3)
    raise TimeoutError(f"{arn} still running after {timeout:.0f} s")


def start_restore(system: LocalSystem, name: str, **fields: Any) -> str:
    """Start an execution exactly as the console does: the state machine, a name, an input document."""
    document = {**json.loads((EVENTS / "restore" / "latest-to-staging.json").read_text()), **fields}
    console.print(f"[dim]$ aws stepfunctions start-execution --name {name} --input '{json.dumps(document)}'[/]")
    started = system.emulator.client("stepfunctions").start_execution(
        stateMachineArn=system.state_machine_arn, name=name, input=json.dumps(document)
    )
    return str(started["executionArn"])


@contextmanager
def application_writing_before(step: str, target: Path) -> Iterator[None]:
    """An application still pointed at ``target`` writes one row just before the restore runs ``step``."""
    from backstop.handlers import restore as restore_handler

    real = restore_handler.handler

    def handler(event: dict[str, Any], context: Any) -> Any:
        if event.get("step") == step:
            with closing(sqlite3.connect(target)) as conn, conn:
                conn.execute("INSERT INTO orders VALUES (999999, 1, 'paid', '2026-11-22')")
        return real(event, context)

    restore_handler.handler = handler
    try:
        yield
    finally:
        restore_handler.handler = real


def run(workspace: Path) -> DemoResult:
    """Run the scenario in ``workspace`` (recreated) and return what it showed."""
    shutil.rmtree(workspace, ignore_errors=True)
    (workspace / "tmp").mkdir(parents=True)
    result = DemoResult()
    shop, staging, uploads = workspace / "shop.db", workspace / "staging" / "shop.db", workspace / "uploads"

    console.print(Rule("1. Sample databases"))
    create_sample_database(shop)
    staging.parent.mkdir()
    create_sample_database(staging)
    create_sample_directory(uploads)
    result.postgres = postgres_available()
    if result.postgres:
        create_postgres_sample()
        console.print(f"  PostgreSQL at 127.0.0.1:5432: database {PG_DATABASE} (2,000 accounts, 20,000 transfers)")
    else:
        console.print("  [yellow]PostgreSQL is not reachable at 127.0.0.1:5432: its part is skipped[/]")
    config_path = write_config(workspace, shop, staging, uploads, result.postgres)
    config = parse_config(config_path.read_text(), source=str(config_path))
    console.print(f"  {shop} (SQLite, WAL, migrations table), {uploads} (files); config {config_path}")

    try:
        with local_system(config, log_dir=workspace / "logs") as system:
            _scenario(system, config_path, result, shop, staging)
    finally:
        if result.postgres:
            drop_postgres_sample()
    return result


def _scenario(system: LocalSystem, config_path: Path, result: DemoResult, shop: Path, staging: Path) -> None:
    skipped = sorted(set(system.deployed.skipped.values()))
    result.skipped_resources = skipped
    created = len(system.template["Resources"]) - len(system.deployed.skipped)
    console.print(Rule(f"The stack, stood up from its synthesized template at {system.emulator.endpoint}"))
    console.print(f"  {created} resources created; not emulated (listed, not created): {', '.join(skipped)}")
    config_path = system.cli_config(config_path)
    cli = Cli(system, config_path)
    store = S3Store(system.emulator.client("s3"), bucket=system.bucket, prefix="backups")

    console.print(Rule("2. Scheduled backups (schedules never fire on the emulator: each is a tick)"))
    now = datetime.now(UTC).replace(microsecond=0)
    tick_at = now.replace(minute=0, second=0) - timedelta(hours=1)  # the last scheduled run before now
    original = logical_digest(shop)
    table = Table("schedule tick", "backup", "stored", "tier", "sha256")
    for schedule in system.schedules:
        if "backs up" not in schedule.description:
            continue
        at = tick_at
        console.print(f"[dim]tick {schedule.expression} -> {schedule.function} at {at:%Y-%m-%dT%H:%MZ}[/]")
        outcome = system.tick(schedule, at)
        manifest = store.get_manifest(outcome["backup_id"])
        database = manifest.database
        result.backups[database] = manifest.backup_id
        table.add_row(
            schedule.description.removeprefix("Backstop: "),
            manifest.backup_id,
            f"{manifest.object.size:,} B",
            manifest.retention_tier,
            manifest.object.sha256[:16] + "...",
        )
    console.print(table)
    expected = {"shop", "uploads", *(["ledger"] if result.postgres else [])}
    result.record("scheduled backups", set(result.backups) == expected, ", ".join(sorted(result.backups.values())))
    cli("list", "shop")
    verified = cli("verify", "shop", "latest")
    result.record("verify shop latest", verified.returncode == 0, "size, SHA-256, manifest, integrity_check, rows")
    pinned = store.get_manifest(result.backups["shop"]).object
    try:
        system.emulator.client("s3").delete_object(Bucket=system.bucket, Key=pinned.key, VersionId=pinned.version_id)
        denial = ""
    except ClientError as exc:
        denial = str(exc.response["Error"]["Code"])
    result.record(
        "a backup cannot be deleted",
        denial == "AccessDenied",
        f"{denial or 'deleted!'}: Object Lock until its tier expires",
    )
    manual = json.loads(cli("backup", "shop", "--type", "manual", "--json", show=False).stdout)
    flip_byte(system.bucket, manual["object"]["key"], manual["object"]["version_id"], offset=4096)
    damaged = cli("verify", "shop", manual["backup_id"])
    result.corrupt_verify_exit = damaged.returncode
    result.record("verify catches a damaged copy", damaged.returncode == 1, "one flipped byte: SHA-256 mismatch")

    console.print(Rule("3. A restore drill, and a verification sweep of everything stored"))
    # The newest backup is the damaged manual copy, which a drill would rightly fail: drill the scheduled one.
    drill = system.tick(system.schedule_of("restore drill of shop"), tick_at, backup=result.backups["shop"])
    result.drill = dict(drill)
    result.record(
        "restore drill of shop",
        drill["passed"] is True,
        f"{drill['backup_id']} restored into scratch space and validated in {drill['seconds']:.1f} s, then removed",
    )
    cli("list", "shop")
    system.alerts()
    sweep = system.tick(system.schedule_of("verification sweep"), now)
    result.sweep = dict(sweep)
    found = [a["message"] for a in system.alerts() if a["message"].get("event") == "backup_corrupt"]
    result.record(
        "sweep finds the damaged copy",
        sweep["corrupt"] == [manual["backup_id"]] and [m["backup_id"] for m in found] == [manual["backup_id"]],
        f"{sweep['checked']} backups re-read ({sweep['bytes_read']:,} bytes); corrupt: {', '.join(sweep['corrupt'])}",
    )

    console.print(Rule("4. Freshness check: on time, then two days later"))
    freshness = system.schedule_of("recent backup")
    system.alerts()  # from here on, every alert is the check's
    system.tick(freshness, now + timedelta(minutes=5))
    result.fresh_alerts = system.alerts()
    result.record("fresh: no alert", result.fresh_alerts == [], "every newest backup is within stale_after")
    system.tick(freshness, now + timedelta(days=2))
    time.sleep(0.5)
    result.stale_alerts = system.alerts()
    for alert in result.stale_alerts:
        console.print(f"  [yellow]alert[/] {alert['subject']}")
    stale = {str(a["message"].get("database")) for a in result.stale_alerts}
    result.record("two days later: stale alerts", stale >= {"shop", "uploads"}, f"alerted: {', '.join(sorted(stale))}")

    console.print(Rule("5. Lose data, restore it: alice asks, bob approves (four eyes, identities from AWS)"))
    alice = ("alice", environment_of(user_session(system.emulator, "alice")))
    bob = ("bob", environment_of(user_session(system.emulator, "bob")))
    with closing(sqlite3.connect(shop)) as conn, conn:
        conn.execute("DELETE FROM order_lines WHERE order_id > 100")
        conn.execute("UPDATE products SET price_cents = 0")
    console.print("  a bad deploy deleted most order lines and zeroed every price")
    cli(
        *REQUEST,
        "shop",
        "--target",
        "in-place",
        "--reason",
        "DEMO-1: bad deploy",
        "--name",
        "demo-restore-shop",
        who=alice,
    )
    arn = system.execution_arn("demo-restore-shop")
    request = wait_for(system, "restore_approval_requested")
    result.plan = dict(request["message"]["plan"])
    console.print(f"  [bold]{request['subject']}[/] (requested by {request['message']['requester']['arn']}, verified)")
    for key in (
        "backup_id",
        "backup_time",
        "size",
        "sha256",
        "target_identity",
        "safety_snapshot",
        "estimated_seconds",
    ):
        console.print(f"    {key}: {result.plan.get(key)}")
    lines = result.plan["rows"].get("order_lines", {})
    console.print(f"    rows order_lines: backup {lines.get('backup')}, target now {lines.get('target')}")
    phrase = f"RESTORE {result.plan['backup_id']}"
    own = cli("approve", "demo-restore-shop", "--confirm", phrase, who=alice)
    result.self_approval = own.stderr.strip() if own.returncode == 1 else ""
    result.record("the requester cannot approve", "SameApproverError" in result.self_approval, "alice was refused")
    approved = cli("approve", "demo-restore-shop", "--confirm", phrase, who=bob)
    result.grant = approved.stdout
    described = wait_until_done(system, arn)
    result.approved_status = described["status"]
    result.sqlite_equal = logical_digest(shop) == original
    result.record(
        "approved restore of shop",
        approved.returncode == 0 and result.approved_status == "SUCCEEDED" and result.sqlite_equal,
        f"{result.approved_status}; every table equal to backup {result.plan['backup_id']}",
    )
    cli("restore-status", "demo-restore-shop")

    console.print(Rule("6. A console start has no verified requester; a restore failing after its snapshot rolls back"))
    start_restore(system, "demo-console-staging", database="shop", target="staging")
    request = wait_for(system, "restore_approval_requested")
    refused = cli(
        "approve", "demo-console-staging", "--confirm", f"RESTORE {request['message']['plan']['backup_id']}", who=bob
    )
    result.console_approval = refused.stderr.strip() if refused.returncode == 1 else ""
    cli("reject", "demo-console-staging", "--reason", "asked again with backstop restore-request", who=bob)
    result.record(
        "a console start cannot pass four eyes",
        "UnverifiedRequesterError" in result.console_approval,
        "bob was refused",
    )
    wait_until_done(system, system.execution_arn("demo-console-staging"))
    before = logical_digest(staging)
    with application_writing_before("validate_target", staging):
        cli(*REQUEST, "shop", "--target", "staging", "--reason", "refresh", "--name", "demo-refresh-staging", who=alice)
        request = wait_for(system, "restore_approval_requested")
        cli(
            "approve",
            "demo-refresh-staging",
            "--confirm",
            f"RESTORE {request['message']['plan']['backup_id']}",
            who=bob,
        )
        console.print("  an application still pointed at staging writes an order while it is being restored")
        described = wait_until_done(system, system.execution_arn("demo-refresh-staging"))
    result.rollback_status = described["status"]
    result.rollback_error = str(described.get("error"))
    final = wait_for(system, "restore_failed")
    console.print(f"  [yellow]alert[/] {final['subject']}: {final['message'].get('reason')}")
    result.staging_kept = logical_digest(staging) == before
    result.record(
        "failed restore rolled back",
        result.rollback_error == "RestoreRolledBack" and result.staging_kept,
        "staging equals its pre-restore data (from the safety snapshot)",
    )
    table_name = system.restore_table
    holders = system.emulator.client("dynamodb").scan(
        TableName=table_name, FilterExpression="sk = :l", ExpressionAttributeValues={":l": {"S": "lock"}}
    )
    result.lock_free = holders["Count"] == 0
    result.record("no restore lock left", result.lock_free, "both targets free again")
    audit = cli("restores", "--json", show=False)
    result.audits = json.loads(audit.stdout) if audit.returncode == 0 else []
    cli("restores")

    console.print(Rule("7. Where everything is"))
    where = Table("what", "where")
    where.add_row("emulator (AWS API)", system.emulator.endpoint)
    where.add_row("vault bucket", f"s3://{system.bucket}/backups/")
    where.add_row("restore state machine", system.state_machine_arn)
    where.add_row("restore table (locks, approvals, audit)", system.restore_table)
    where.add_row("alerts", f"{system.outputs['AlertsTopicArn']} -> queue {system.alerts_queue_url}")
    where.add_row("config", str(config_path))
    where.add_row("function logs (CloudWatch Logs in AWS)", str(config_path.parent / "logs"))
    console.print(where)
    console.print("Go on with [bold]make local[/]: the same system, left running, with .local/env for your shell.")


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
