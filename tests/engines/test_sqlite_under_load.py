"""SQLite in WAL mode with a writer committing every few milliseconds (RELIABILITY.md "Backup time").

The writer moves money between accounts and logs every transfer, so two invariants hold in every
committed state: the balances sum to a constant, and each balance equals its opening balance plus
what the transfer log says it received minus what it sent. Automatic checkpoints are disabled, so
the committed transfers live in the -wal file: exactly what a plain copy of the main file misses.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from backstop.services.restore import RestoreService
from tests.services import at, run_backup

ACCOUNTS = 10
OPENING_BALANCE = 10_000
TOTAL = ACCOUNTS * OPENING_BALANCE


def create_bank(path: Path) -> Path:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(
            """
            CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
            CREATE TABLE transfers (
                id INTEGER PRIMARY KEY, src INTEGER NOT NULL, dst INTEGER NOT NULL, amount INTEGER NOT NULL,
                memo TEXT NOT NULL
            );
            """
        )
        conn.executemany("INSERT INTO accounts VALUES (?, ?)", [(i, OPENING_BALANCE) for i in range(1, ACCOUNTS + 1)])
        conn.commit()
    return path  # closing the only connection checkpointed: the main file holds the schema and opening balances


class TransferWriter(threading.Thread):
    """Commits one transfer every ~2 ms on its own connection until stopped; counts what it committed."""

    def __init__(self, path: Path) -> None:
        super().__init__(name="transfer-writer", daemon=True)
        self._path = path
        self._stop_requested = threading.Event()
        self.committed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with closing(sqlite3.connect(self._path, timeout=10, isolation_level=None)) as conn:
                conn.execute("PRAGMA wal_autocheckpoint=0")
                i = 0
                while not self._stop_requested.is_set():
                    src, dst = 1 + i % ACCOUNTS, 1 + (i * 7 + 3) % ACCOUNTS
                    amount = 1 + i % 50
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("UPDATE accounts SET balance = balance - ? WHERE id = ?", (amount, src))
                    conn.execute(
                        "INSERT INTO transfers (src, dst, amount, memo) VALUES (?, ?, ?, ?)",
                        (src, dst, amount, f"transfer {i} " + "x" * 200),
                    )
                    conn.execute("UPDATE accounts SET balance = balance + ? WHERE id = ?", (amount, dst))
                    conn.execute("COMMIT")
                    self.committed += 1
                    i += 1
                    time.sleep(0.002)
        except BaseException as exc:  # noqa: BLE001  # reported to the test thread, which fails on it
            self.error = exc

    def stop(self) -> None:
        self._stop_requested.set()
        self.join(timeout=30)
        assert not self.is_alive(), "the writer did not stop"
        assert self.error is None, f"the writer failed: {self.error!r}"

    def wait_for(self, commits: int) -> int:
        """Block until at least ``commits`` transfers are committed (a guard, not a timing assertion)."""
        deadline = time.monotonic() + 30
        while self.committed < commits:
            assert self.error is None, f"the writer failed: {self.error!r}"
            assert time.monotonic() < deadline, "the writer made no progress"
            time.sleep(0.005)
        return self.committed


@pytest.fixture
def bank_under_load(tmp_path: Path) -> Iterator[tuple[Path, TransferWriter]]:
    path = create_bank(tmp_path / "bank.db")
    writer = TransferWriter(path)
    writer.start()
    try:
        yield path, writer
    finally:
        if writer.is_alive():
            writer.stop()


def ledger(path: Path) -> tuple[int, int, bool, str]:
    """(transfers, sum of balances, every balance agrees with the log, integrity_check) of a database file."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
        integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
        transfers = conn.execute("SELECT count(*) FROM transfers").fetchone()[0]
        total = conn.execute("SELECT sum(balance) FROM accounts").fetchone()[0]
        mismatched = conn.execute(
            """
            SELECT count(*) FROM accounts a
            WHERE a.balance != ? + coalesce((SELECT sum(amount) FROM transfers WHERE dst = a.id), 0)
                                 - coalesce((SELECT sum(amount) FROM transfers WHERE src = a.id), 0)
            """,
            (OPENING_BALANCE,),
        ).fetchone()[0]
    return transfers, total, mismatched == 0, integrity


def wal_bytes(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_backup_of_a_database_under_write_load_is_consistent(
    bank_under_load: tuple[Path, TransferWriter], make_config: Callable[..., Any], store: Any, tmp_path: Path
) -> None:
    # given a WAL database whose committed transfers sit in the -wal while a writer keeps committing
    path, writer = bank_under_load
    config = make_config({"name": "bank", "engine": "sqlite", "path": str(path)})
    committed_before = writer.wait_for(50)
    assert wal_bytes(path) > 0

    # when it is backed up, and the writer carries on afterwards
    outcome = run_backup(config, store, at(21), database="bank")
    committed_after = writer.committed
    writer.wait_for(committed_after + 20)
    writer.stop()

    # then the snapshot passed integrity_check, and its restored copy holds every transfer committed
    # before the backup began, no torn transfer, and the invariants
    assert outcome.manifest.integrity.check == "integrity_check"
    assert outcome.manifest.integrity.passed
    restored = tmp_path / "restored.db"
    RestoreService(config, store).restore("bank", "latest", restored, dry_run=False, confirm=lambda _p: True)
    transfers, total, balances_agree, integrity = ledger(restored)
    assert integrity == "ok"
    # (+1: the writer bumps its counter just after COMMIT returns, so one commit may not be counted yet)
    assert committed_before <= transfers <= committed_after + 1
    assert outcome.manifest.tables["transfers"].rows == transfers
    assert total == TOTAL
    assert balances_agree


def test_negative_control_a_plain_file_copy_under_the_same_load_loses_committed_transfers(
    bank_under_load: tuple[Path, TransferWriter], tmp_path: Path
) -> None:
    # given the same database and load, with committed transfers only in the -wal
    path, writer = bank_under_load
    committed_before_copy = writer.wait_for(50)
    assert wal_bytes(path) > 0

    # when the main file is copied the naive way (without its -wal)
    copy = Path(shutil.copy(path, tmp_path / "copy.db"))
    writer.stop()

    # then the copy misses transfers that were committed before it was taken, and nothing says so:
    # it passes integrity_check (this is the loss the online backup API prevents)
    transfers, total, balances_agree, integrity = ledger(copy)
    assert transfers < committed_before_copy
    assert integrity == "ok"
    assert (total, balances_agree) == (TOTAL, True)
