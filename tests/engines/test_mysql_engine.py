"""MySQL/MariaDB on the real local server: backups through S3 load back equal, and every broken dump is refused."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import zstandard

from backstop.errors import IntegrityError, SourceError
from backstop.names import backup_id_for
from backstop.services.artifacts import fetch_artifact
from backstop.services.verify import VerifyService
from tests.services import at, failure_records, leftovers, open_uploads, replace_artifact, run_backup, write_manifest

HOST, PORT = "127.0.0.1", 3306


def admin(database: str | None = None) -> pymysql.connections.Connection[Any]:
    return pymysql.connect(host=HOST, port=PORT, user="root", password="", database=database, autocommit=True)


def _server_is_up() -> bool:
    try:
        admin().close()
    except pymysql.MySQLError:
        return False
    return True


pytestmark = [
    pytest.mark.xdist_group("mysql"),
    pytest.mark.skipif(not _server_is_up(), reason="no MariaDB/MySQL server at 127.0.0.1:3306"),
]


def execute(database: str, *statements: str) -> None:
    with admin(database) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement)


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    with admin(database) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


@pytest.fixture
def new_database() -> Iterator[Callable[[], str]]:
    """Creates uniquely named databases and drops them all afterwards."""
    created: list[str] = []

    def create() -> str:
        name = f"bs_{uuid.uuid4().hex[:12]}"
        execute("mysql", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        created.append(name)
        return name

    yield create
    for name in created:
        execute("mysql", f"DROP DATABASE IF EXISTS `{name}`")


def shop_config(make_config: Callable[..., Any], dbname: str, **extra: Any) -> Any:
    entry = {"name": "shop", "engine": "mysql", "host": HOST, "port": PORT, "dbname": dbname, "user": "root"}
    return make_config({**entry, **extra})


HOSTILE_NOTES = [
    "a),(b",
    "it's",
    "back\\slash\\'",
    "semi;colon);",
    "new\nline\r\n\ttab",
    "unicode ✓ ünïcødé 😀",
    "x\n-- Dumping data for table `customers`\nINSERT INTO `customers` VALUES (1),(2);",
    "",
]


def build_shop(dbname: str, orders: int) -> None:
    """A schema using most of what a dump must carry, with ``orders`` orders and hostile strings."""
    execute(
        dbname,
        "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(100) NOT NULL UNIQUE, "
        "kind ENUM('retail','wholesale') NOT NULL, prefs JSON) ENGINE=InnoDB",
        "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, amount_cents INT NOT NULL, "
        "note TEXT, payload VARBINARY(64), KEY by_amount (amount_cents), "
        "CONSTRAINT fk_customer FOREIGN KEY (customer_id) REFERENCES customers(id)) ENGINE=InnoDB",
        "CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, order_id INT NOT NULL) ENGINE=InnoDB",
        "INSERT INTO customers (name, kind, prefs) SELECT CONCAT('customer ', seq), "
        "IF(seq % 3 = 0, 'wholesale', 'retail'), JSON_OBJECT('n', seq, 'tags', JSON_ARRAY('a', 'b')) "
        "FROM seq_1_to_1000",
        "INSERT INTO orders (customer_id, amount_cents, note, payload) SELECT 1 + seq % 1000, seq, "
        f"CONCAT('order ', seq, ' ', REPEAT('x', seq % 40)), UNHEX(MD5(seq)) FROM seq_1_to_{orders}",
        "CREATE VIEW big_orders AS SELECT id, amount_cents FROM orders WHERE amount_cents > 1000",
        "CREATE FUNCTION cents_to_units(c INT) RETURNS DECIMAL(12,2) DETERMINISTIC RETURN c / 100",
        "CREATE PROCEDURE count_orders(OUT n INT) SELECT COUNT(*) INTO n FROM orders",
        "CREATE TRIGGER orders_audit AFTER INSERT ON orders FOR EACH ROW INSERT INTO audit (order_id) VALUES (NEW.id)",
        "CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit WHERE id < 0",
    )
    with admin(dbname) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO orders (customer_id, amount_cents, note, payload) VALUES (1, 1, %s, %s)",
            [(note, note.encode()[:64]) for note in HOSTILE_NOTES]
            + [(None, bytes(range(64))), ("bin", b"'),(;\\\n\x00\xff")],
        )


def row_counts(dbname: str) -> dict[str, int]:
    tables = query(
        dbname,
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_TYPE = 'BASE TABLE'",
    )
    return {str(name): int(query(dbname, f"SELECT COUNT(*) FROM `{name}`")[0][0]) for (name,) in tables}


def logical_content(dbname: str) -> dict[str, Any]:
    """What must survive a dump and load: ordered per-table checksums, objects and AUTO_INCREMENT values."""
    tables = sorted(row_counts(dbname))
    return {
        "checksums": {t: query(dbname, f"CHECKSUM TABLE `{t}` EXTENDED")[0][1] for t in tables},
        "ordered": {
            t: query(
                dbname,
                f"SELECT COUNT(*), SUM(CRC32(CONCAT_WS('|', id, {'note, HEX(payload)' if t == 'orders' else 'id'})))"
                f" FROM `{t}`",
            )
            for t in tables
        },
        "views": query(dbname, "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = DATABASE()"),
        "routines": sorted(
            query(
                dbname,
                "SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = DATABASE()",
            )
        ),
        "triggers": query(
            dbname, "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = DATABASE()"
        ),
        "events": query(dbname, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = DATABASE()"),
        "auto_increment": query(
            dbname,
            "SELECT TABLE_NAME, AUTO_INCREMENT FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = DATABASE() ORDER BY TABLE_NAME",
        ),
    }


def load_backup(store: Any, manifest: Any, into: str, tmp_path: Path) -> None:
    """Download, check and decompress a backup, then load it with the real client."""
    raw = tmp_path / f"{into}.sql"
    fetch_artifact(store, manifest, raw)
    with raw.open("rb") as dump:
        subprocess.run(["mariadb", f"--host={HOST}", f"--port={PORT}", "--user=root", into], stdin=dump, check=True)
    raw.unlink()


def test_a_mysql_backup_loads_back_logically_equal(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: Any, tmp_path: Path, work_dir: Path
) -> None:
    # given a database with views, routines, a trigger, an event, ENUM/JSON/binary columns and hostile strings
    source = new_database()
    build_shop(source, orders=200_000)

    # when it is backed up and the artifact is loaded into a fresh database
    outcome = run_backup(shop_config(make_config, source), store, at(21), database="shop")
    target = new_database()
    load_backup(store, outcome.manifest, target, tmp_path)

    # then the loaded data equals the source, the manifest counts equal the data, and nothing is left behind
    manifest = outcome.manifest
    assert manifest.object.key.endswith(".sql.zst")
    assert logical_content(target) == logical_content(source)
    assert {name: stat.rows for name, stat in manifest.tables.items()} == row_counts(source)
    assert manifest.tables["orders"].rows == 200_000 + len(HOSTILE_NOTES) + 2
    assert all(stat.exact for stat in manifest.tables.values())
    assert manifest.integrity.check == "dump-trailer" and manifest.integrity.passed
    assert manifest.source["dbname"] == source and manifest.source["server_version"]
    assert "server_id@hostname" in manifest.source or "server_uuid" in manifest.source
    assert any(name in manifest.tools for name in ("mariadb-dump", "mysqldump"))
    assert manifest.warnings == ()
    assert leftovers(work_dir) == []


def fake_dump(bin_dir: Path, body: str) -> Path:
    """A ``mariadb-dump`` first on PATH that runs the real tool through ``body`` (a shell fragment using $REAL)."""
    bin_dir.mkdir(exist_ok=True)
    real = "/usr/bin/mariadb-dump" if Path("/usr/bin/mariadb-dump").exists() else "/usr/bin/mysqldump"
    script = bin_dir / "mariadb-dump"
    script.write_text(
        f'#!/bin/bash\nREAL={real}\nif [ "$1" = "--version" ]; then exec "$REAL" "$@"; fi\n{body}\n',
    )
    script.chmod(0o755)
    return script


BROKEN_DUMPS = {
    "killed mid-stream": ('"$REAL" "$@" | head -c 300000\nkill -KILL $$', "killed by signal 9"),
    "exit 1 after bytes": ('"$REAL" "$@" | head -c 300000\nexit 1', "exited with code 1"),
    "trailer missing": ('"$REAL" "$@" | grep -v \'^-- Dump completed\'\nexit ${PIPESTATUS[0]}', "trailer"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_DUMPS))
def test_a_broken_dump_is_never_committed(
    case: str,
    new_database: Callable[[], str],
    make_config: Callable[..., Any],
    store: Any,
    s3: Any,
    tmp_path: Path,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a database of a few megabytes and a dump tool that breaks in one way
    source = new_database()
    build_shop(source, orders=30_000)
    body, reason = BROKEN_DUMPS[case]
    fake_dump(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")

    # when a backup runs
    with pytest.raises(SourceError) as failure:
        run_backup(shop_config(make_config, source), store, at(21), database="shop")

    # then it fails naming the database and the reason; no manifest, no open upload, nothing left behind
    assert "MySQL database shop" in str(failure.value) and reason in str(failure.value)
    assert not store.manifest_exists(backup_id_for("shop", at(21)))
    assert open_uploads(s3) == []
    assert leftovers(work_dir) == []
    assert len(failure_records(s3, "shop")) == 1


@pytest.fixture
def mysql_user(new_database: Callable[[], str]) -> Iterator[tuple[str, str, str]]:
    """A database and a dedicated user with a password, granted on it only: (database, user, password)."""
    dbname = new_database()
    user, password = f"bs_{uuid.uuid4().hex[:10]}", f"right-{uuid.uuid4().hex}"
    execute(dbname, "CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(20))", "INSERT INTO t VALUES (1, 'a'), (2, 'b')")
    for host in ("%", "localhost"):
        execute("mysql", f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
        execute("mysql", f"GRANT ALL ON `{dbname}`.* TO '{user}'@'{host}'")
    yield dbname, user, password
    for host in ("%", "localhost"):
        execute("mysql", f"DROP USER IF EXISTS '{user}'@'{host}'")


def test_a_wrong_password_fails_clearly_without_revealing_it(
    mysql_user: tuple[str, str, str],
    make_config: Callable[..., Any],
    store: Any,
    s3: Any,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    # given a user with a password, and a configuration giving a wrong sentinel password
    dbname, user, _ = mysql_user
    sentinel = f"SENTINEL-{uuid.uuid4().hex}"
    monkeypatch.setenv("SHOP_DB_PASSWORD", sentinel)
    config = shop_config(make_config, dbname, user=user, password_env="SHOP_DB_PASSWORD")

    # when a backup runs
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as failure:
        run_backup(config, store, at(21), database="shop")

    # then it fails saying access was denied, and the sentinel is nowhere
    out, err = capfd.readouterr()
    assert "access denied" in str(failure.value)
    assert sentinel not in str(failure.value) + repr(failure.value.args)
    assert sentinel not in caplog.text
    assert sentinel not in out + err
    records = failure_records(s3, "shop")
    assert len(records) == 1 and sentinel not in json.dumps(records)
    assert leftovers(work_dir) == []


def test_the_password_reaches_the_dump_only_through_a_private_option_file(
    mysql_user: tuple[str, str, str],
    make_config: Callable[..., Any],
    store: Any,
    tmp_path: Path,
    work_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a password-protected user, MYSQL_PWD set in our environment, and a dump tool that records its argv and env
    dbname, user, password = mysql_user
    monkeypatch.setenv("SHOP_DB_PASSWORD", password)
    monkeypatch.setenv("MYSQL_PWD", password)
    record = tmp_path / "seen"
    fake_dump(
        tmp_path / "bin",
        f"cat /proc/$$/cmdline > {record}.argv\ncat /proc/$$/environ > {record}.env\n"
        f'stat -c %a "${{1#--defaults-extra-file=}}" > {record}.mode\nexec "$REAL" "$@"',
    )
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    config = shop_config(make_config, dbname, user=user, password_env="SHOP_DB_PASSWORD")

    # when a backup runs
    outcome = run_backup(config, store, at(21), database="shop")

    # then it succeeds; the password was in neither argv nor environment; the option file was 0600 and is gone
    argv = Path(f"{record}.argv").read_bytes().split(b"\0")
    assert outcome.manifest.tables["t"].rows == 2
    assert argv[2].startswith(b"--defaults-extra-file=")
    assert password.encode() not in Path(f"{record}.argv").read_bytes()
    assert password.encode() not in Path(f"{record}.env").read_bytes()
    assert Path(f"{record}.mode").read_text().strip() == "600"
    assert leftovers(work_dir) == []


def test_concurrent_transfers_during_the_dump_keep_the_invariant(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given accounts holding a constant total, a large table to make the dump take a while,
    # and a writer moving money between accounts and logging each transfer, committing continuously
    source = new_database()
    build_shop(source, orders=100_000)
    execute(
        source,
        "CREATE TABLE accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL) ENGINE=InnoDB",
        "CREATE TABLE transfers (id INT AUTO_INCREMENT PRIMARY KEY, src INT, dst INT, amount INT) ENGINE=InnoDB",
        "INSERT INTO accounts SELECT seq, 1000 FROM seq_1_to_100",
    )
    stop = threading.Event()
    done = [0]

    def transfer() -> None:
        with admin(source) as conn, conn.cursor() as cur:
            conn.autocommit(False)
            n = 0
            while not stop.is_set():
                src, dst = 1 + n % 100, 1 + (n * 7 + 3) % 100
                cur.execute("UPDATE accounts SET balance = balance - 5 WHERE id = %s", (src,))
                cur.execute("INSERT INTO transfers (src, dst, amount) VALUES (%s, %s, 5)", (src, dst))
                cur.execute("UPDATE accounts SET balance = balance + 5 WHERE id = %s", (dst,))
                conn.commit()
                n += 1
                done[0] = n

    writer = threading.Thread(target=transfer)
    writer.start()
    try:
        while done[0] < 50:
            threading.Event().wait(0.01)
        # when a backup runs while transfers commit
        before = done[0]
        outcome = run_backup(shop_config(make_config, source), store, at(21), database="shop")
        during = done[0] - before
    finally:
        stop.set()
        writer.join()
    target = new_database()
    load_backup(store, outcome.manifest, target, tmp_path)

    # then the loaded accounts keep the total, and every count equals the manifest's (not the live source's)
    assert during > 0
    assert query(target, "SELECT SUM(balance) FROM accounts")[0][0] == 100 * 1000
    assert row_counts(target) == {name: stat.rows for name, stat in outcome.manifest.tables.items()}
    assert outcome.manifest.tables["transfers"].rows < row_counts(source)["transfers"]


def test_a_myisam_table_is_backed_up_with_a_warning_naming_it(
    new_database: Callable[[], str], make_config: Callable[..., Any], store: Any
) -> None:
    # given a database with an InnoDB table and a MyISAM table
    source = new_database()
    execute(
        source,
        "CREATE TABLE ledger (id INT PRIMARY KEY) ENGINE=InnoDB",
        "CREATE TABLE legacy_log (id INT PRIMARY KEY, line TEXT) ENGINE=MyISAM",
        "INSERT INTO ledger SELECT seq FROM seq_1_to_10",
        "INSERT INTO legacy_log SELECT seq, 'x' FROM seq_1_to_3",
    )

    # when it is backed up
    outcome = run_backup(shop_config(make_config, source), store, at(21), database="shop")

    # then the backup is committed, with a warning naming the MyISAM table and no other
    assert {name: stat.rows for name, stat in outcome.manifest.tables.items()} == {"ledger": 10, "legacy_log": 3}
    assert len(outcome.manifest.warnings) == 1
    assert "legacy_log uses MyISAM" in outcome.manifest.warnings[0]


@pytest.fixture
def committed(new_database: Callable[[], str], make_config: Callable[..., Any], store: Any) -> tuple[Any, Any]:
    source = new_database()
    execute(
        source,
        "CREATE TABLE items (id INT PRIMARY KEY, label VARCHAR(50)) ENGINE=InnoDB",
        "INSERT INTO items SELECT seq, CONCAT('it''s ', seq, '),(') FROM seq_1_to_500",
    )
    config = shop_config(make_config, source)
    return config, run_backup(config, store, at(21), database="shop").manifest


def test_a_committed_mysql_backup_verifies(committed: tuple[Any, Any], store: Any) -> None:
    # given a committed backup
    config, manifest = committed

    # when it is verified
    report = VerifyService(config, store).verify("shop", manifest.backup_id)

    # then the trailer and the row counts are reported as checked
    checks = dict(report.checks)
    assert checks["dump-trailer"].startswith("trailer present")
    assert checks["row counts"].startswith("1 tables match")


def test_verify_names_a_row_count_that_differs_from_a_resealed_manifest(
    committed: tuple[Any, Any], store: Any, s3: Any
) -> None:
    # given a consistently re-sealed manifest claiming one more row than the dump holds
    config, manifest = committed
    forged = manifest.model_copy(
        update={"tables": {"items": manifest.tables["items"].model_copy(update={"rows": 501})}}
    ).sealed()
    write_manifest(s3, store, forged)

    # when it is verified, then the difference is named
    with pytest.raises(IntegrityError, match=r"items: 501 expected, 500 found"):
        VerifyService(config, store).verify("shop", manifest.backup_id)


def test_verify_refuses_a_dump_without_its_trailer(
    committed: tuple[Any, Any], store: Any, s3: Any, tmp_path: Path
) -> None:
    # given a backup replaced by a consistent artifact whose dump was cut before the trailer
    config, manifest = committed
    raw_path = tmp_path / "raw.sql"
    fetch_artifact(store, manifest, raw_path)
    raw = raw_path.read_bytes()
    cut = raw[: raw.index(b"-- Dump completed")]
    replace_artifact(s3, store, manifest, zstandard.ZstdCompressor().compress(cut), raw=cut)

    # when it is verified, then it is refused as incomplete
    with pytest.raises(IntegrityError, match=r"not a complete dump: .*trailer"):
        VerifyService(config, store).verify("shop", manifest.backup_id)
