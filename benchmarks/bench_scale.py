"""Scale: snapshot build, iALS fit and peak memory on a generated 25 000 000-event store.

    python benchmarks/bench_scale.py [--events 25000000] [--items 200000] [--store PATH]

The store (power-law users and items) is generated once with plain sqlite3 inserts and reused.
Side by side in one run: the raw floor (``SELECT`` of the same columns into numpy without
weighting) against our snapshot, and the iALS fit of our model wrapper against implicit's own
``AlternatingLeastSquares`` on the same matrix.
"""

from __future__ import annotations

import argparse
import resource
import sqlite3
import time
from pathlib import Path

import numpy as np

import dataflywheel as dfw
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import create
from dataflywheel.learn.snapshot import take_snapshot

TYPES = ["view", "click", "like", "watch", "skip"]


def generate(path: Path, n_events: int, n_items: int, seed: int = 0) -> None:
    """Fill a fresh store with ``n_events`` power-law events over 90 days."""
    n_users = max(1_000, n_events // 100)
    with dfw.open(f"sqlite:///{path}"):
        pass  # creates the schema
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    rng = np.random.default_rng(seed)
    now = time.time()
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO users (user_id, hidden, created_at, updated_at) VALUES (?, 0, ?, ?)",
        ((f"u{i}", now, now) for i in range(n_users)),
    )
    conn.executemany(
        "INSERT INTO items (item_id, hidden, created_at, updated_at) VALUES (?, 0, ?, ?)",
        ((f"i{i}", now, now) for i in range(n_items)),
    )
    conn.execute("COMMIT")
    chunk = 1_000_000
    for start in range(0, n_events, chunk):
        size = min(chunk, n_events - start)
        users = (rng.zipf(1.2, size) - 1) % n_users + 1
        items = (rng.zipf(1.1, size) - 1) % n_items + 1
        kinds = rng.integers(0, len(TYPES), size)
        stamps = now - 90 * 86_400 + np.sort(rng.random(size)) * 90 * 86_400
        rows = (
            (f"g{start + j:012d}", int(u), int(i), TYPES[k], 1.0, float(t), now)
            for j, (u, i, k, t) in enumerate(zip(users, items, kinds, stamps, strict=True))
        )
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO events (event_id, user_idx, item_idx, type, value, ts, received_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
        print(f"  generated {start + size:,} events", flush=True)
    conn.close()


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=25_000_000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--store", type=Path, default=Path("benchmarks/.data/scale.db"))
    args = parser.parse_args()
    args.store.parent.mkdir(parents=True, exist_ok=True)
    if not args.store.exists():
        started = time.perf_counter()
        generate(args.store, args.events, args.items)
        print(f"generated the store in {time.perf_counter() - started:.0f} s")

    conn = sqlite3.connect(args.store)
    started = time.perf_counter()
    raw = np.array(conn.execute("SELECT user_idx, item_idx, ts FROM events").fetchall())
    floor = time.perf_counter() - started
    print(f"floor   plain SELECT of {len(raw):,} rows into numpy   {floor:7.1f} s")
    del raw

    with dfw.open(f"sqlite:///{args.store}") as wheel:
        started = time.perf_counter()
        snapshot = take_snapshot(wheel.store, record=False)
        ev = snapshot.events
        matrix = build_matrix(
            ev.user_idx,
            ev.item_idx,
            ev.weight,
            ev.timestamp,
            n_users=snapshot.n_users,
            n_items=snapshot.n_items,
        )
        snap_seconds = time.perf_counter() - started
    print(
        f"ours    snapshot + weighted matrix ({snapshot.n_events:,} events, "
        f"{matrix.nnz:,} pairs)   {snap_seconds:7.1f} s  ({snap_seconds / floor:.2f} × floor)"
    )

    started = time.perf_counter()
    create("ials", factors=64, iterations=10).fit(matrix)
    ours = time.perf_counter() - started
    print(f"ours    iALS fit (64 factors, 10 iterations)          {ours:7.1f} s")

    from implicit.cpu.als import AlternatingLeastSquares

    started = time.perf_counter()
    AlternatingLeastSquares(factors=64, iterations=10, random_state=0).fit(matrix)
    peer = time.perf_counter() - started
    print(
        f"peer    implicit ALS fit, same matrix                  {peer:7.1f} s  "
        f"(ours {ours / peer:.2f} ×)"
    )
    print(f"peak memory of this process                            {peak_gb():7.2f} GB")


if __name__ == "__main__":
    main()
