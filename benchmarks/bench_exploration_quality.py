"""Quality of the lists `flywheel serve` really serves, with exploration on, on ml-latest-small.

    python benchmarks/bench_exploration_quality.py [--data DIR] [--model ease] [--budget 120]
        [--repeats 10] [--rare 10]

The usual split (each user's last 20 % of ratings by time held out, users with >= 5; every
rating one interaction): the training part is tracked into a fresh SQLite store as `click`
events with their times, `wheel.train(--model, --budget)` trains the champion, and for each
serving policy a real `flywheel serve` (loop off, seed 0) answers `GET /v1/recommendations?
user_id=U&k=10` for every test user ``--repeats`` times. NDCG@10 of the served lists against the
held-out items (consumed items are excluded by serving, as in the offline protocol), beside the
best tuned peer of bench_quality_movielens (binary EASE, λ tuned on the validation split carved
from the training part, refit and scored once). Policies: the default (``aimed_epsilon``),
greedy (exploration off), the previous default (uniform ε-greedy, ε = 0.05) and the aimed
policy without its preference for little-known items.

The trade-off, per policy over all served lists: the share of slots explored (propensity < 0.5),
the distinct items they showed, the explored impressions of items with fewer than ``--rare``
training interactions, and how many explored impressions (and how many of rare items) were of
a held-out item of the user, i.e. would have drawn a click: labels the model could not get
from its own lists.
"""

from __future__ import annotations

import argparse
import http.client
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

import dataflywheel as dfw
from _report import publish
from _server import running_server
from bench_quality_movielens import Ease, Split, binary, tune
from dataflywheel.evaluation.ranking import ndcg_at_k
from dataflywheel.evaluation.splits import per_user_temporal

REPO = Path(__file__).resolve().parents[1]
K = 10
POLICIES: dict[str, dict[str, Any] | None] = {
    "default (aimed_epsilon, ε = 0.05)": None,
    "greedy (exploration off)": {"name": "greedy"},
    "uniform ε-greedy, ε = 0.05 (previous default)": {
        "name": "epsilon_greedy",
        "epsilon": 0.05,
    },
    "aimed, near misses only (novelty 0)": {"name": "aimed_epsilon", "novelty": 0.0},
}


def splits(data: Path) -> tuple[Split, Split, np.ndarray, np.ndarray]:
    """The test and validation splits of bench_quality_movielens, and the raw user/item ids."""
    raw = np.loadtxt(data / "ratings.csv", delimiter=",", skiprows=1)
    user_keys, users = np.unique(raw[:, 0], return_inverse=True)
    item_keys, items = np.unique(raw[:, 1], return_inverse=True)
    times = raw[:, 3]
    shape = (len(user_keys), len(item_keys))
    _, test_mask = per_user_temporal(users, items, times, fraction=0.2, min_interactions=5)
    test = Split(users, items, times, shape, test_mask)
    tm = ~test_mask
    _, inner = per_user_temporal(users[tm], items[tm], times[tm], fraction=0.2, min_interactions=5)
    valid_mask = np.zeros(len(users), dtype=bool)
    valid_mask[np.flatnonzero(tm)[inner]] = True
    valid = Split(users, items, times, shape, valid_mask | test_mask)
    valid.heldout = binary(users[valid_mask], items[valid_mask], shape)
    valid.eval_users = np.flatnonzero(valid.heldout.getnnz(axis=1))
    return test, valid, user_keys.astype(np.int64), item_keys.astype(np.int64)


def train_store(
    db: str, test: Split, user_keys: np.ndarray, item_keys: np.ndarray, args: Any
) -> str:
    """Track the training part as clicks and train the champion through the engine."""
    mask = test.train_mask
    users, items, times = user_keys[test.users[mask]], item_keys[test.items[mask]], test.times[mask]
    with dfw.open(db, seed=0) as wheel:
        for start in range(0, len(users), 10_000):
            wheel.track_many(
                {
                    "event_id": f"{u}-{i}",
                    "user_id": str(u),
                    "item_id": str(i),
                    "type": "click",
                    "timestamp": float(t),
                }
                for u, i, t in zip(
                    users[start : start + 10_000],
                    items[start : start + 10_000],
                    times[start : start + 10_000],
                    strict=True,
                )
            )
        version = wheel.train(args.model, budget=args.budget)
    return f"{version['version']} {version['params']}"


def serve_lists(
    db: str, policy: dict[str, Any] | None, users: list[str], repeats: int
) -> list[list[list[tuple[str, float]]]]:
    """Per repeat, per user: the served (item id, propensity) list, through HTTP."""
    env = {"FLYWHEEL_LOOP_ENABLED": "false", "FLYWHEEL_SEED": "0"}
    if policy is not None:
        env["FLYWHEEL_EXPLORATION"] = orjson.dumps(policy).decode()
    out = []
    with running_server(db, env=env) as port:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(repeats):
            lists = []
            for user in users:
                conn.request("GET", f"/v1/recommendations?user_id={user}&k={K}")
                response = conn.getresponse()
                body = orjson.loads(response.read())
                if response.status != 200:
                    raise RuntimeError(f"{response.status}: {body}")
                lists.append([(i["item_id"], i["propensity"]) for i in body["items"]])
            out.append(lists)
        conn.close()
    return out


def measure(
    served: list[list[list[tuple[str, float]]]],
    test: Split,
    item_index: dict[str, int],
    train_counts: np.ndarray,
    rare: int,
) -> dict[str, Any]:
    """NDCG@10 per repeat and what the explored slots showed."""
    held = test.heldout[test.eval_users]
    ndcgs = []
    explored = slots = explored_rare = hits = rare_hits = 0
    distinct: set[int] = set()
    for lists in served:
        recs = np.full((len(lists), K), -1, dtype=np.int64)
        for row, shown in enumerate(lists):
            truth = set(held.indices[held.indptr[row] : held.indptr[row + 1]].tolist())
            for col, (item_id, propensity) in enumerate(shown):
                item = item_index[item_id]
                recs[row, col] = item
                slots += 1
                if propensity < 0.5:
                    explored += 1
                    distinct.add(item)
                    is_rare = train_counts[item] < rare
                    explored_rare += is_rare
                    hits += item in truth
                    rare_hits += is_rare and item in truth
        ndcgs.append(ndcg_at_k(recs, held, K))
    n_lists = len(served) * len(served[0])
    return {
        "ndcg": float(np.mean(ndcgs)),
        "ndcg_sd": float(np.std(ndcgs)),
        "explored_share": explored / slots,
        "distinct": len(distinct),
        "rare_per_1000": 1000 * explored_rare / n_lists,
        "hits_per_1000": 1000 * hits / n_lists,
        "rare_hits_per_1000": 1000 * rare_hits / n_lists,
        "hits": hits,
        "explored": explored,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--model", default="ease")
    parser.add_argument("--budget", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rare", type=int, default=10, help="'little-known': fewer interactions")
    parser.add_argument(
        "--peer-l2",
        type=float,
        nargs="+",
        default=[50.0, 100.0, 200.0, 400.0, 800.0, 1600.0],
        help="the EASE peer's λ grid (bench_quality_movielens's by default)",
    )
    parser.add_argument(
        "--output", type=Path, default=REPO / "benchmarks" / "results" / "exploration_quality.md"
    )
    args = parser.parse_args()
    loads = [os.getloadavg()[0]]
    test, valid, user_keys, item_keys = splits(args.data)
    print(f"{test.shape[0]} users, {test.shape[1]} items; tuning the EASE peer", flush=True)
    peer = tune(
        "EASE (binary)",
        Ease,
        [{"l2": lam} for lam in args.peer_l2],
        valid,
        test,
    )
    item_index = {str(key): n for n, key in enumerate(item_keys)}
    train_counts = np.asarray(test.train.sum(axis=0)).ravel()
    users = [str(user_keys[u]) for u in test.eval_users]
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/exploration.db"
        started = time.perf_counter()
        champion = train_store(db, test, user_keys, item_keys, args)
        print(f"champion {champion} in {time.perf_counter() - started:.0f} s", flush=True)
        loads.append(os.getloadavg()[0])
        for label, policy in POLICIES.items():
            served = serve_lists(db, policy, users, args.repeats)
            rows[label] = measure(served, test, item_index, train_counts, args.rare)
            print(f"  {label}: NDCG@10 {rows[label]['ndcg']:.4f}", flush=True)
            loads.append(os.getloadavg()[0])
    greedy = rows["greedy (exploration off)"]["ndcg"]
    command = (
        f"python benchmarks/bench_exploration_quality.py --model {args.model} "
        f"--budget {args.budget:g} --repeats {args.repeats} --rare {args.rare} "
        f"--peer-l2 {' '.join(f'{lam:g}' for lam in args.peer_l2)}"
    )
    lines = [
        "# Served-list quality with exploration on: ml-latest-small, per-user temporal holdout",
        "",
        f"Command: `{command}` ({os.cpu_count()} cores; load average "
        f"{min(loads):.1f}–{max(loads):.1f} during the run). Champion: {champion}.",
        f"Peer: {peer['name']} {peer['params']}, test NDCG@10 {peer['ndcg']:.4f}. "
        f"{len(users)} test users, each served {args.repeats}× through HTTP per policy.",
        "",
        "| policy | served NDCG@10 (sd over repeats) | / peer | given up vs greedy "
        "| slots explored | distinct items explored "
        f"| explored impressions of items with < {args.rare} interactions / 1000 lists "
        "| explored held-out hits / 1000 lists (of rare items) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['ndcg']:.4f} ({r['ndcg_sd']:.4f}) | {r['ndcg'] / peer['ndcg']:.3f} "
            f"| {1 - r['ndcg'] / greedy:+.1%} | {r['explored_share']:.3f} | {r['distinct']} "
            f"| {r['rare_per_1000']:.0f} | {r['hits_per_1000']:.1f} "
            f"({r['rare_hits_per_1000']:.1f}) |"
        )
    default = rows["default (aimed_epsilon, ε = 0.05)"]
    lines += [
        "",
        f"Default / peer: **{default['ndcg'] / peer['ndcg']:.3f}** (target 1.10); greedy / peer "
        f"{greedy / peer['ndcg']:.3f}.",
    ]
    publish(lines, args.output)


if __name__ == "__main__":
    main()
