"""Ingestion throughput, durable before the 200, against a plain sqlite3 loop (the ceiling).

    python benchmarks/bench_ingest_http.py [--events 300000] [--singles 10000] \
        [--postgres postgresql://postgres@127.0.0.1/test] [--import-rows 1000000] \
        [--import-runs 1] [--only-import]

Runs, in one go: (1) the ceiling — the same rows inserted with ``sqlite3.executemany`` in
1 000-row transactions into an events table with the same dedup index; (2) ``flywheel serve``
on SQLite with batches of 1 000 events; (3) single-event requests; (4) the same on PostgreSQL
when ``--postgres`` is given; (5) ``flywheel import events`` of a generated CSV file, against
the same ceiling loop with the importer's 500 000-row transactions; the import is timed both
as the command reports it and over the whole process (start-up, opening the store, exit), the
median of ``--import-runs`` runs, each into a new store. Clients are asyncio keep-alive
connections (8 for batches, 64 for single events). Writes ``benchmarks/results/ingest_http.md``
(``--only-import`` runs part 5 alone and only prints, unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv

from _load import http_request, run_load
from _server import running_server

BATCH = 1_000
IMPORT_CHUNK = 500_000  # rows per transaction of `flywheel import` (importer.COMMIT_ROWS)
RESULTS = Path(__file__).parent / "results" / "ingest_http.md"


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


def ceiling(
    events: list[dict[str, object]], batch: int = BATCH, *, store_indexes: bool = False
) -> float:
    """Plain sqlite3: the same rows, same durability (WAL, synchronous=FULL), same dedup index.

    ``store_indexes`` adds what the store's events table also carries (received_at,
    recommendation_id and context columns; the ts and recommendation_id indexes), to show how
    much of the gap is schema rather than engine.
    """
    extra_columns = ", received_at REAL, recommendation_id TEXT, context TEXT"
    with tempfile.TemporaryDirectory() as tmp:
        conn = sqlite3.connect(Path(tmp) / "ceiling.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, user_id TEXT, "
            f"item_id TEXT, type TEXT, value REAL, ts REAL{extra_columns if store_indexes else ''})"
        )
        conn.execute("CREATE UNIQUE INDEX ux ON events (event_id)")
        columns = "event_id, user_id, item_id, type, value, ts"
        now = time.time()
        rows: list[tuple[object, ...]] = [
            (e["event_id"], e["user_id"], e["item_id"], e["type"], e["value"], e["timestamp"])
            for e in events
        ]
        if store_indexes:
            conn.execute("CREATE INDEX ix_ts ON events (ts)")
            conn.execute(
                "CREATE INDEX ix_rec ON events (recommendation_id) "
                "WHERE recommendation_id IS NOT NULL"
            )
            columns += ", received_at, recommendation_id, context"
            rows = [(*row, now, None, None) for row in rows]
        sql = f"INSERT OR IGNORE INTO events ({columns}) VALUES ({', '.join('?' * len(rows[0]))})"
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            conn.execute("BEGIN")
            conn.executemany(sql, rows[start : start + batch])
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


def import_file(n: int, directory: Path) -> tuple[Path, list[dict[str, object]]]:
    """A CSV of ``n`` ratings (power-law users and items, time-ordered) and the same rows."""
    rng = np.random.default_rng(0)
    users = rng.zipf(1.3, n) % 50_000
    items = rng.zipf(1.2, n) % 20_000
    values = rng.integers(1, 11, n) / 2
    stamps = np.sort(1.6e9 + rng.random(n) * 3e7).round()
    table = pa.table(
        {
            "user_id": pa.array([f"u{u}" for u in users.tolist()]),
            "item_id": pa.array([f"m{i}" for i in items.tolist()]),
            "value": values,
            "timestamp": stamps.astype(np.int64),
        }
    )
    path = directory / "events.csv"
    pacsv.write_csv(table, path)
    rows: list[dict[str, object]] = [
        {
            "event_id": f"{i:012d}",
            "user_id": u,
            "item_id": m,
            "type": "rating",
            "value": v,
            "timestamp": t,
        }
        for i, (u, m, v, t) in enumerate(
            zip(
                table["user_id"].to_pylist(),
                table["item_id"].to_pylist(),
                values.tolist(),
                stamps.tolist(),
                strict=True,
            )
        )
    ]
    return path, rows


def measure_import(n: int, runs: int = 1) -> tuple[list[tuple[float, float]], float]:
    """((rows/s as `flywheel import` reports it, rows/s over the whole command) per run,
    ceiling rows/s). Each run imports the file into a new store."""
    with tempfile.TemporaryDirectory() as tmp:
        path, rows = import_file(n, Path(tmp))
        limit = ceiling(rows, IMPORT_CHUNK)
        del rows
        flywheel = Path(sys.executable).with_name("flywheel")
        command = [str(flywheel), "import", "events", str(path), "--type", "rating", "--json"]
        results = []
        for run in range(runs):
            started = time.perf_counter()
            done = subprocess.run(
                [*command, "--db", f"sqlite:///{tmp}/import{run}.db"],
                check=True,
                capture_output=True,
                text=True,
            )
            wall = n / (time.perf_counter() - started)
            report = json.loads(done.stdout)
            assert report["accepted"] == n, report
            results.append((float(report["rows_per_second"]), wall))
    return results, limit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--singles", type=int, default=6_000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--postgres", default=None, help="e.g. postgresql://postgres@127.0.0.1/test"
    )
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="0 to skip")
    parser.add_argument("--import-runs", type=int, default=1, help="median of this many imports")
    parser.add_argument(
        "--only-import", action="store_true", help="run the file import (part 5) alone"
    )
    parser.add_argument("--out", type=Path, default=None, help=f"default: {RESULTS}")
    args = parser.parse_args()
    if args.only_import:
        lines = import_lines(args.import_rows, args.import_runs)
        if args.out is not None:
            write_results(args.out, lines)
        return

    load = os.getloadavg()[0]
    events = make_events(args.events, "b")
    limit = ceiling(events)
    schema_limit = ceiling(events, store_indexes=True)
    lines = [
        f"machine: {os.cpu_count()} cores, load average {load:.1f} at the start; "
        f"{args.events:,} events in batches of {BATCH}, {args.singles:,} single-event requests, "
        f"{args.workers} worker(s)",
        f"ceiling  sqlite3 executemany loop     {limit:>10,.0f} rows/s",
        f"         same, with the store's columns and indexes {schema_limit:>10,.0f} rows/s",
    ]
    print("\n".join(lines), flush=True)

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        rate, single = measure(f"sqlite:///{tmp}/bench.db", events, args.singles, args.workers)
    report(
        f"ours     HTTP batches → SQLite        {rate:>10,.0f} events/s  "
        f"({rate / limit:.2f} × ceiling, {rate / schema_limit:.2f} × with the store's indexes)"
    )
    report(
        f"ours     HTTP single events → SQLite  {single:>10,.0f} requests/s "
        f"({single / limit:.3f} × ceiling)"
    )
    if args.postgres:
        import psycopg

        admin, _, _ = args.postgres.rpartition("/")
        with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS flywheel_bench WITH (FORCE)")
            conn.execute("CREATE DATABASE flywheel_bench")
        bench_db = f"{admin}/flywheel_bench"
        rate, single = measure(bench_db, make_events(args.events, "p"), args.singles, args.workers)
        report(
            f"ours     HTTP batches → PostgreSQL    {rate:>10,.0f} events/s  "
            f"({rate / limit:.2f} × ceiling, {rate / schema_limit:.2f} × with the store's indexes)"
        )
        report(
            f"ours     HTTP single events → PG      {single:>10,.0f} requests/s "
            f"({single / limit:.3f} × ceiling)"
        )
    if args.import_rows:
        for line in import_lines(args.import_rows, args.import_runs, header=False):
            report(line)
    write_results(args.out or RESULTS, lines)


def import_lines(n: int, runs: int, *, header: bool = True) -> list[str]:
    """Part 5, printed as it goes: the ceiling, then the import (median of ``runs``)."""
    lines = []

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    if header:
        report(
            f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the "
            f"start; {n:,} rows, {runs} import run(s)"
        )
    results, limit = measure_import(n, runs)
    report(f"ceiling  sqlite3 loop, {IMPORT_CHUNK:,}-row transactions {limit:>10,.0f} rows/s")
    reported = statistics.median(r for r, _ in results)
    wall = statistics.median(w for _, w in results)
    outside = statistics.median(n / w - n / r for r, w in results)
    report(
        f"ours     flywheel import events ({n:,} rows, CSV) "
        f"{reported:>10,.0f} rows/s  ({reported / limit:.2f} × ceiling; "
        f"{wall:,.0f} rows/s for the whole command, {outside:.2f} s of it outside the import: "
        "start-up, opening the store, exit)"
    )
    if runs > 1:
        report(
            "         runs (whole command): "
            + ", ".join(f"{w:,.0f}" for _, w in sorted(results, key=lambda r: r[1]))
            + f" rows/s; load average {os.getloadavg()[0]:.1f} at the end"
        )
    return lines


def write_results(out: Path, lines: list[str]) -> None:
    command = " ".join(["python benchmarks/bench_ingest_http.py", *sys.argv[1:]])
    out.write_text(
        "# Ingestion throughput (HTTP, durable before the 200; bulk import)\n\n"
        f"Command: `{command}`\n\n```\n" + "\n".join(lines) + "\n```\n"
    )


if __name__ == "__main__":
    main()
