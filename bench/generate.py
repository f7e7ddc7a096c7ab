"""A realistic SQLite database of a requested size, generated once and cached under bench/out/.

Realistic means what an application database looks like to a backup tool: several tables with
integer keys, foreign keys and secondary indexes, short and long text, JSON payloads and binary
attachments, so that zstd reaches a ratio of about 2-4x (neither all zeros nor random noise).
The content is deterministic (seeded), so every machine benchmarks the same bytes for a given size.
"""

from __future__ import annotations

import itertools
import json
import random
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

MIB = 1024 * 1024

# Bump when the generator changes, so a cached database of an older shape is not reused.
GENERATOR_VERSION = 1

SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL UNIQUE,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL,
    balance_cents INTEGER NOT NULL,
    tags TEXT
);
CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers(id),
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    amount_cents INTEGER NOT NULL,
    currency TEXT NOT NULL,
    shipping_address TEXT NOT NULL,
    note TEXT
);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX orders_created ON orders(created_at);
CREATE INDEX orders_status ON orders(status, created_at);
CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX events_order ON events(order_id, at);
CREATE TABLE documents (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL REFERENCES orders(id),
    mime TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX documents_order ON documents(order_id);
CREATE TABLE schema_migrations (version TEXT PRIMARY KEY);
INSERT INTO schema_migrations VALUES ('20250101000000'), ('20250601120000'), ('20260115093000');
"""

COUNTRIES = ("DE", "FR", "US", "GB", "NL", "ES", "IT", "PL", "SE", "JP", "BR", "CA", "IN", "AU")
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "returned", "cancelled")
CURRENCIES = ("EUR", "USD", "GBP", "JPY")
EVENT_KINDS = ("created", "payment_authorised", "payment_captured", "picked", "shipped", "delivered", "email_sent")
MIMES = ("application/pdf", "image/png", "application/json", "text/plain")

# Rows written per transaction batch: per customer, about 8 orders, 4 events per order, and a
# document for about one order in 7.
CUSTOMERS_PER_BATCH = 250


def _lexicon(rng: random.Random, size: int = 4_000) -> list[str]:
    """Pronounceable words: text that compresses like natural language, not like a repeated string."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["an", "er", "in", "on", "st", "th"]
    return ["".join(rng.choices(syllables, k=rng.choice((1, 2, 2, 3, 3, 4)))) for _ in range(size)]


class _Rows:
    """Deterministic row factories sharing one seeded generator and vocabulary."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.words = _lexicon(self.rng)
        # Zipf-distributed word frequencies, as in natural language: a few words are very common.
        self.cum_weights = list(itertools.accumulate(1.0 / (rank + 1) for rank in range(len(self.words))))
        self.streets = [" ".join(self.rng.choices(self.words, k=2)).title() for _ in range(3_000)]
        self.cities = [self.rng.choice(self.words).title() for _ in range(800)]
        self.customer_id = 0
        self.order_id = 0
        self.event_id = 0
        self.document_id = 0

    def text(self, low: int, high: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum_weights, k=self.rng.randint(low, high)))

    def timestamp(self) -> int:
        return 1_600_000_000 + self.rng.randrange(170_000_000)

    def batch(self) -> tuple[list[tuple[object, ...]], ...]:
        rng = self.rng
        customers: list[tuple[object, ...]] = []
        orders: list[tuple[object, ...]] = []
        events: list[tuple[object, ...]] = []
        documents: list[tuple[object, ...]] = []
        for _ in range(CUSTOMERS_PER_BATCH):
            self.customer_id += 1
            first, last = rng.choice(self.words).title(), rng.choice(self.words).title()
            created = self.timestamp()
            customers.append(
                (
                    self.customer_id,
                    f"{first} {last}",
                    f"{first.lower()}.{last.lower()}{self.customer_id}@{rng.choice(self.words)}.example",
                    rng.choice(COUNTRIES),
                    time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created)),
                    rng.randrange(-50_000, 5_000_000),
                    ",".join(rng.sample(self.words[:60], k=rng.randint(0, 4))) or None,
                )
            )
            for _ in range(rng.randint(4, 12)):
                self.order_id += 1
                at = created + rng.randrange(30_000_000)
                orders.append(
                    (
                        self.order_id,
                        self.customer_id,
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                        rng.choice(STATUSES),
                        rng.randrange(100, 500_000),
                        rng.choice(CURRENCIES),
                        f"{rng.randint(1, 300)} {rng.choice(self.streets)}, {rng.randint(10000, 99999)} "
                        f"{rng.choice(self.cities)}, {rng.choice(COUNTRIES)}",
                        self.text(3, 40) if rng.random() < 0.6 else None,
                    )
                )
                for step in range(rng.randint(2, 6)):
                    self.event_id += 1
                    payload = {
                        "actor": rng.choice(("system", "customer", "support", "warehouse")),
                        "ip": f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}",
                        "message": self.text(2, 14),
                        "attempt": step + 1,
                        "ref": f"{rng.getrandbits(64):016x}",
                    }
                    events.append(
                        (self.event_id, self.order_id, at + step * 3_600, EVENT_KINDS[step], json.dumps(payload))
                    )
                if rng.random() < 0.15:
                    self.document_id += 1
                    body = self.document_body()
                    documents.append(
                        (self.document_id, self.order_id, rng.choice(MIMES), f"{rng.getrandbits(256):064x}", body)
                    )
        return customers, orders, events, documents

    def document_body(self) -> bytes:
        """An attachment: a compressed part (an embedded image, random bytes) and a textual part."""
        rng = self.rng
        binary = rng.randbytes(rng.randint(100, 1_200))
        text = self.text(80, 500).encode()
        return (
            b"%DOC-1.4\n" + text[: len(text) // 2] + b"\nstream\n" + binary + b"\nendstream\n" + text[len(text) // 2 :]
        )


def database_path(out_dir: Path, size_mib: int) -> Path:
    return out_dir / f"bench-{size_mib}mib-v{GENERATOR_VERSION}.sqlite"


def _batches(seed: int) -> Iterator[tuple[list[tuple[object, ...]], ...]]:
    rows = _Rows(seed)
    while True:
        yield rows.batch()


def generate(path: Path, size_mib: int, *, seed: int = 20260101, log: bool = True) -> Path:
    """Create ``path`` (WAL mode) of about ``size_mib`` MiB unless it already exists; return it.

    Written to a temporary name and renamed at the end, so an interrupted run never leaves a
    truncated database behind that a later run would reuse.
    """
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    target = size_mib * MIB
    started = time.monotonic()
    with closing(sqlite3.connect(partial, isolation_level=None)) as conn:
        conn.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144;")
        conn.executescript(SCHEMA)
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        reported = 0
        for customers, orders, events, documents in _batches(seed):
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", customers)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", orders)
            conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", events)
            conn.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?)", documents)
            conn.execute("COMMIT")
            size = int(conn.execute("PRAGMA page_count").fetchone()[0]) * page_size
            if size >= target:
                break
            if log and size * 10 // target > reported:
                reported = size * 10 // target
                print(f"  generating {path.name}: {size / MIB:.0f} / {size_mib} MiB", flush=True)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA user_version=3")
    partial.replace(path)
    if log:
        print(f"  generated {path.name}: {path.stat().st_size / MIB:.0f} MiB in {time.monotonic() - started:.0f} s")
    return path
