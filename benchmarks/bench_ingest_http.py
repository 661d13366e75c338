"""HTTP ingestion throughput, durable before the 200, against a plain sqlite3 loop (the ceiling).

    python benchmarks/bench_ingest_http.py [--events 300000] [--postgres postgresql://postgres@127.0.0.1/test]

Runs, in one go: (1) the ceiling — the same rows inserted with ``sqlite3.executemany`` in
1 000-row transactions into an events table with the same dedup index; (2) ``flywheel serve``
on SQLite with batches of 1 000 events; (3) single-event requests; (4) the same on PostgreSQL
when ``--postgres`` is given. Clients are asyncio keep-alive connections (8 for batches,
64 for single events).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import orjson

from _load import http_request, run_load
from _server import running_server

BATCH = 1_000


def make_events(n: int, run: str) -> list[dict[str, object]]:
    now = time.time()
    return [
        {
            "event_id": f"{run}{i:012d}",
            "user_id": f"u{i % 5000}",
            "item_id": f"i{(i * 7) % 20000}",
            "type": "click",
            "value": 1.0,
            "timestamp": now - 3600 + i * 1e-3,
        }
        for i in range(n)
    ]


def ceiling(events: list[dict[str, object]]) -> float:
    """Plain sqlite3: the same rows, same durability (WAL, synchronous=FULL), same dedup index."""
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "ceiling.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, user_id TEXT, "
            "item_id TEXT, type TEXT, value REAL, ts REAL)"
        )
        conn.execute("CREATE UNIQUE INDEX ux ON events (event_id)")
        rows = [
            (e["event_id"], e["user_id"], e["item_id"], e["type"], e["value"], e["timestamp"])
            for e in events
        ]
        started = time.perf_counter()
        for start in range(0, len(rows), BATCH):
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO events (event_id, user_id, item_id, type, value, ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                rows[start : start + BATCH],
            )
            conn.execute("COMMIT")
        return len(rows) / (time.perf_counter() - started)


def measure(
    db: str, events: list[dict[str, object]], singles: int, workers: int
) -> tuple[float, float]:
    batches = [
        http_request("POST", "/v1/events", orjson.dumps({"events": events[i : i + BATCH]}))
        for i in range(0, len(events), BATCH)
    ]
    singles_raw = [
        http_request("POST", "/v1/events", orjson.dumps({"events": [e]}))
        for e in make_events(singles, "s")
    ]
    with running_server(db, workers=workers, env={"FLYWHEEL_LOOP_ENABLED": "false"}) as port:
        batch_rate = run_load(port, batches, connections=8)[0] * BATCH
        single_rate = run_load(port, singles_raw, connections=64)[0]
    return batch_rate, single_rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--singles", type=int, default=6_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--postgres", default=None, help="e.g. postgresql://postgres@127.0.0.1/test"
    )
    args = parser.parse_args()

    events = make_events(args.events, "b")
    limit = ceiling(events)
    print(f"machine: {os.cpu_count()} cores; {args.events:,} events in batches of {BATCH}")
    print(f"ceiling  sqlite3 executemany loop     {limit:>10,.0f} rows/s")
    with tempfile.TemporaryDirectory() as tmp:
        rate, single = measure(f"sqlite:///{tmp}/bench.db", events, args.singles, args.workers)
    print(
        f"ours     HTTP batches → SQLite        {rate:>10,.0f} events/s  "
        f"({rate / limit:.2f} × ceiling)"
    )
    print(f"ours     HTTP single events → SQLite  {single:>10,.0f} requests/s")
    if args.postgres:
        import psycopg

        admin, _, _ = args.postgres.rpartition("/")
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS flywheel_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE flywheel_bench")
        bench_db = f"{admin}/flywheel_bench"
        rate, single = measure(bench_db, make_events(args.events, "p"), args.singles, args.workers)
        print(
            f"ours     HTTP batches → PostgreSQL    {rate:>10,.0f} events/s  "
            f"({rate / limit:.2f} × ceiling)"
        )
        print(f"ours     HTTP single events → PG      {single:>10,.0f} requests/s")


if __name__ == "__main__":
    main()
