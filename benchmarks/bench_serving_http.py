"""Serving latency over HTTP: top-10 with fold-in on ml-latest-small, at a fixed offered rate.

    python benchmarks/bench_serving_http.py [--rate 1000] [--requests 30000] [--click-every 20]
        [--rounds 1]

Imports the ratings into a fresh SQLite store with `flywheel import events`, trains EASE through
the engine (`wheel.train("ease")`: the searched, pruned form), starts a real `flywheel serve`
and drives `GET /v1/recommendations?user_id=U&k=10` open loop at ``--rate`` requests/s (latency
counts from when a request was due), posting a click for the next requested user every
``--click-every`` requests (so the following recommendation folds it in); ``--rounds`` repeats
the load on the same server and reports each round's p99. The floor: implicit's
item-kNN recommend for one user called directly in-process for the same users.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import orjson
import scipy.sparse as sp
from implicit.nearest_neighbours import CosineRecommender
from threadpoolctl import threadpool_limits

import dataflywheel as dfw
from _load import http_request, run_paced
from _report import publish
from _server import running_server

REPO = Path(__file__).resolve().parents[1]
K = 10


def percentiles(latencies: np.ndarray) -> str:
    p50, p95, p99 = np.percentile(latencies * 1e3, [50, 95, 99])
    return f"p50 {p50:.2f} ms, p95 {p95:.2f} ms, p99 {p99:.2f} ms"


def floor(ratings: Path, users: np.ndarray) -> np.ndarray:
    """Per-call latency of implicit's item-kNN top-10 for one user, in-process."""
    raw = np.loadtxt(ratings, delimiter=",", skiprows=1)
    user_keys, user_idx = np.unique(raw[:, 0], return_inverse=True)
    item_idx = np.unique(raw[:, 1], return_inverse=True)[1]
    matrix = sp.csr_matrix(
        (np.ones(len(raw), dtype=np.float32), (user_idx, item_idx)),
        shape=(len(user_keys), int(item_idx.max()) + 1),
    )
    model = CosineRecommender(K=100)
    with threadpool_limits(1, "blas"):
        model.fit(matrix, show_progress=False)
    rows = np.searchsorted(user_keys, users.astype(float))
    times = np.empty(len(rows))
    for n, row in enumerate(rows):
        started = time.perf_counter()
        model.recommend(int(row), matrix[row], N=K)
        times[n] = time.perf_counter() - started
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--click-every", type=int, default=20)
    parser.add_argument(
        "--rounds", type=int, default=1, help="measured rounds against the same server"
    )
    parser.add_argument("--budget", type=float, default=120.0, help="training budget, seconds")
    parser.add_argument("--db", default=None, help="reuse a store with a champion (no import)")
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "serving.md"
    )
    args = parser.parse_args()
    ratings = args.data / "ratings.csv"
    movies = np.loadtxt(ratings, delimiter=",", skiprows=1, usecols=(0, 1), dtype=np.int64)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{tmp}/serving.db"
        if args.db is None:
            started = time.perf_counter()
            subprocess.run(
                [
                    str(Path(sys.executable).with_name("flywheel")),
                    *("import", "events", str(ratings)),
                    *("--map", "user_id=userId,item_id=movieId,value=rating"),
                    *("--type", "rating", "--db", db),
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            print(f"imported in {time.perf_counter() - started:.1f} s", flush=True)
        wheel = dfw.open(db)
        started = time.perf_counter()
        version = wheel.registry.champion() if args.db else wheel.train("ease", budget=args.budget)
        wheel.close()
        print(f"model {version['params']} ({time.perf_counter() - started:.1f} s)", flush=True)
        users = rng.choice(np.unique(movies[:, 0]), size=args.requests)
        items = rng.choice(movies[:, 1], size=args.requests)
        requests: list[bytes] = []
        is_click: list[bool] = []
        for n, (user, item) in enumerate(zip(users, items, strict=True)):
            if args.click_every and n % args.click_every == args.click_every - 1:
                event = {"user_id": str(user), "item_id": str(item), "type": "click"}
                requests.append(
                    http_request("POST", "/v1/events", orjson.dumps({"events": [event]}))
                )
                is_click.append(True)
            requests.append(http_request("GET", f"/v1/recommendations?user_id={user}&k={K}"))
            is_click.append(False)
        env = {"FLYWHEEL_LOOP_ENABLED": "false"}
        with running_server(db, workers=args.workers, env=env) as port:
            warm = [
                http_request("GET", f"/v1/recommendations?user_id={u}&k={K}") for u in users[:500]
            ]
            run_paced(port, warm, args.connections, 200.0)
            load = os.getloadavg()[0]
            rounds = [
                run_paced(port, requests, args.connections, args.rate) for _ in range(args.rounds)
            ]
    clicks = np.asarray(is_click)
    achieved = min(rate for rate, _ in rounds)
    lat = np.concatenate([np.asarray(latencies) for _, latencies in rounds])
    every_click = np.tile(clicks, args.rounds)
    recs, posts = lat[~every_click], lat[every_click]
    round_p99 = [
        float(np.percentile(np.asarray(latencies)[~clicks], 99) * 1e3) for _, latencies in rounds
    ]
    peer = floor(ratings, users[:2000])
    ratio = np.percentile(recs, 99) / np.percentile(peer, 99)
    command = (
        f"python benchmarks/bench_serving_http.py --rate {args.rate:g} --requests {args.requests}"
        f" --click-every {args.click_every} --workers {args.workers} --rounds {args.rounds}"
    )
    lines = [
        "# Serving latency: top-10 recommendations with fold-in over HTTP (ml-latest-small)",
        "",
        f"Command: `{command}` (machine: {os.cpu_count()} cores, no GPU; load average "
        f"{load:.1f} when the run started: other jobs shared the cores).",
        f"Store: SQLite, {len(movies):,} ratings imported with `flywheel import events`; model "
        f"`{version['name']}` {version['params']} trained by `wheel.train('ease')`.",
        f"Load: open loop at {args.rate:g} requests/s offered, {args.connections} keep-alive "
        f"connections, a click posted every {args.click_every} requests; `flywheel serve "
        f"--workers {args.workers}`; latency counts from when each request was due.",
        "",
        "| what | requests | latency |",
        "|---|---|---|",
        f"| ours: GET /v1/recommendations (HTTP) | {len(recs):,} | {percentiles(recs)} |",
        f"| ours: POST /v1/events click (HTTP) | {len(posts):,} | {percentiles(posts)} |",
        f"| floor: implicit item-kNN recommend, in-process | {len(peer):,} | {percentiles(peer)} |",
        "",
        f"Achieved rate: **{achieved:,.0f} requests/s** (offered {args.rate:g}; the slowest "
        f"of {args.rounds} round(s) of {len(requests):,} requests on one server process).",
        "p99 of GET per round: "
        + ", ".join(f"{p:.2f} ms" for p in round_p99)
        + f" (median **{np.median(round_p99):.2f} ms**).",
        f"p99 ours over HTTP / p99 in-process floor: {ratio:.1f}x.",
    ]
    publish(lines, args.output)


if __name__ == "__main__":
    main()
