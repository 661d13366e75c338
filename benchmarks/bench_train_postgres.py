"""Training on PostgreSQL against SQLite: snapshot read and train on the same 1 000 000 events.

    python benchmarks/bench_train_postgres.py [--events 1000000] [--pg postgresql://...]
        [--model ials] [--budget 60] [--repeats 1]

One generated Parquet file (power-law users and items, five event types over 90 days) is
imported into a fresh SQLite store and a fresh PostgreSQL database through the bulk import
(``EventImporter``, as ``flywheel import events`` does). For each store the script times the
snapshot read (``take_snapshot``: the columnar bulk read, ADBC on PostgreSQL, or psycopg's
``COPY ... TO STDOUT`` when the driver is missing) and a full ``Trainer.train`` (snapshot, fit,
holdout metrics, registration, one search trial), then prints PostgreSQL's time as a multiple
of SQLite's. On PostgreSQL the two columnar read paths (ADBC and the binary COPY fallback) are
also timed side by side on the snapshot's query.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq

import dataflywheel as dfw
from dataflywheel.ingest.importer import EventImporter
from dataflywheel.learn.snapshot import events_query, take_snapshot
from dataflywheel.store.bulk import read_columns, read_columns_copy

TYPES = ["view", "click", "like", "watch", "skip"]


def generate(path: Path, n_events: int, seed: int = 0) -> None:
    """Write ``n_events`` power-law events (one user per 100 events, 20 000 items)."""
    rng = np.random.default_rng(seed)
    n_users = max(1_000, n_events // 100)
    n_items = 20_000
    now = time.time()
    users = (rng.zipf(1.2, n_events) - 1) % n_users
    items = (rng.zipf(1.1, n_events) - 1) % n_items
    table = pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in users.tolist()]),
            "item_id": pa.array([f"i{i}" for i in items.tolist()]),
            "type": pa.array(np.array(TYPES)[rng.integers(0, len(TYPES), n_events)]),
            "value": rng.random(n_events),
            "timestamp": now - 90 * 86_400 + np.sort(rng.random(n_events)) * 89 * 86_400,
        }
    )
    pq.write_table(table, path)


def fresh_postgres(admin: str) -> str:
    name = f"dfw_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{admin.rsplit('/', 1)[0]}/{name}"


def drop_postgres(admin: str, url: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")


def read_paths(wheel: dfw.Flywheel, repeats: int) -> dict[str, float]:
    """Median seconds of the snapshot query through ADBC and through the binary COPY."""
    query = events_query(wheel.store.settings).params(after=0, upto=2**62)
    times: dict[str, list[float]] = {"adbc": [], "copy": []}
    with wheel.store.read() as conn:
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        for _ in range(repeats):
            for name, read in (("adbc", read_columns), ("copy", read_columns_copy)):
                started = time.perf_counter()
                read(conn, sql, 5)
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def measure(url: str, data: Path, model: str, budget: float, repeats: int) -> dict[str, float]:
    """Import ``data`` into the store at ``url``; median snapshot and train seconds.

    Each timing opens the store anew: a process keeps the SQLite history it has read, and
    the first read of a process is the one a training run pays.
    """
    with dfw.open(url) as wheel:
        started = time.perf_counter()
        result = EventImporter(wheel.store).run(data)
        imported = time.perf_counter() - started
    print(f"  imported {result.accepted:,} events in {imported:.1f} s", flush=True)
    reads, trains = [], []
    for _ in range(repeats):
        with dfw.open(url) as wheel:
            started = time.perf_counter()
            snapshot = take_snapshot(wheel.store, record=False)
            reads.append(time.perf_counter() - started)
        with dfw.open(url, train_max_trials=1) as wheel:
            started = time.perf_counter()
            version = wheel.train(model=model, budget=budget)
            trains.append(time.perf_counter() - started)
    print(
        f"  snapshot of {snapshot.n_events:,} events {statistics.median(reads):.2f} s, "
        f"train ({version['name']}) {statistics.median(trains):.1f} s",
        flush=True,
    )
    if url.startswith("postgresql"):
        with dfw.open(url) as wheel:
            paths = read_paths(wheel, max(repeats, 3))
        print(
            f"  snapshot query alone: ADBC {paths['adbc']:.2f} s, "
            f"binary COPY {paths['copy']:.2f} s ({paths['copy'] / paths['adbc']:.2f} ×)",
            flush=True,
        )
    return {
        "import": imported,
        "snapshot": statistics.median(reads),
        "train": statistics.median(trains),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--pg",
        default=os.environ.get("FLYWHEEL_TEST_PG", "postgresql://postgres@127.0.0.1/postgres"),
    )
    parser.add_argument("--model", default="ials")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "events.parquet"
        generate(data, args.events)
        figures = {}
        print("sqlite")
        figures["sqlite"] = measure(
            f"sqlite:///{Path(tmp) / 'bench.db'}", data, args.model, args.budget, args.repeats
        )
        pg_url = fresh_postgres(args.pg)
        try:
            print("postgresql")
            figures["postgresql"] = measure(pg_url, data, args.model, args.budget, args.repeats)
        finally:
            drop_postgres(args.pg, pg_url)
    sqlite, pg = figures["sqlite"], figures["postgresql"]
    for key in ("snapshot", "train"):
        print(
            f"{key:9} sqlite {sqlite[key]:7.2f} s   postgresql {pg[key]:7.2f} s   "
            f"ratio {pg[key] / sqlite[key]:.2f}"
        )
    print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
