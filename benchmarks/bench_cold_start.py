"""New items ranked from their metadata alone, on ml-latest-small (no retrain, no ratings).

    python benchmarks/bench_cold_start.py [--data DIR] [--hidden 0.1] [--model ease]
        [--budget 60] [--seed 0]

Every rating of 10 % of the items (drawn among items with at least 10 ratings) is hidden; the
rest is ingested as `rating` events, every movie's title and genres are upserted as item
metadata, and a champion is trained. The hidden items are then new to the champion: they have
metadata and no interaction. For every user who rated hidden items, ``wheel.rank(user,
hidden_items)`` ranks all of them through ``candidates`` and NDCG@10 is taken against the
user's own ratings (gain = the rating, 0.5 to 5; unrated hidden items gain 0), beside:
random order; global genre popularity (an item's mean over its genres of the genre's share of
training interactions); genre preference (the same with the user's own training
interactions). The figure: ours / the best of them (target 1.2).
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

import dataflywheel as dfw

K = 10
NO_GENRE = "(no genres listed)"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def ndcg(ranked: list[str], gains: dict[str, float]) -> float:
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    got = sum(gains.get(item, 0.0) * d for item, d in zip(ranked[:K], discounts, strict=False))
    ideal = sorted(gains.values(), reverse=True)[:K]
    best = float(np.dot(ideal, discounts[: len(ideal)]))
    return got / best if best > 0 else 0.0


def genre_scores(
    items: list[str], genres: dict[str, list[str]], counts: dict[str, float]
) -> np.ndarray:
    """Mean over an item's genres of the genre's share of ``counts``."""
    total = sum(counts.values()) or 1.0
    return np.array(
        [
            np.mean([counts.get(g, 0.0) / total for g in genres[item]]) if genres[item] else 0.0
            for item in items
        ]
    )


def ranked_by(items: list[str], scores: np.ndarray, rng: np.random.Generator) -> list[str]:
    """Items by score, best first; ties broken at random (not by catalogue order)."""
    jitter = rng.random(len(items))
    return [items[i] for i in np.lexsort((jitter, -scores))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/ml-latest-small"))
    parser.add_argument("--hidden", type=float, default=0.1)
    parser.add_argument("--model", default="ease")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    ratings = read_csv(args.data / "ratings.csv")
    movies = read_csv(args.data / "movies.csv")
    per_item: dict[str, int] = defaultdict(int)
    for r in ratings:
        per_item[r["movieId"]] += 1
    eligible = sorted((m for m, n in per_item.items() if n >= 10), key=int)
    hidden = set(rng.choice(eligible, size=round(args.hidden * len(eligible)), replace=False))
    hidden_items = sorted(hidden, key=int)
    genres = {
        m["movieId"]: [g for g in m["genres"].split("|") if g and g != NO_GENRE] for m in movies
    }

    train = [r for r in ratings if r["movieId"] not in hidden]
    held: dict[str, dict[str, float]] = defaultdict(dict)
    for r in ratings:
        if r["movieId"] in hidden:
            held[r["userId"]][r["movieId"]] = float(r["rating"])
    genre_all: dict[str, float] = defaultdict(float)
    genre_user: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in train:
        for g in genres.get(r["movieId"], []):
            genre_all[g] += 1.0
            genre_user[r["userId"]][g] += 1.0

    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        wheel = dfw.open(f"sqlite:///{tmp}/cold.db", exploration={"name": "greedy"}, seed=0)
        started = time.perf_counter()
        wheel.upsert_items(
            [
                {
                    "id": m["movieId"],
                    "categories": genres[m["movieId"]],
                    "attributes": {"title": m["title"]},
                }
                for m in movies
            ]
        )
        for start in range(0, len(train), 10_000):
            batch = train[start : start + 10_000]
            wheel.track_many(
                {
                    "event_id": f"{r['userId']}-{r['movieId']}",
                    "user_id": r["userId"],
                    "item_id": r["movieId"],
                    "type": "rating",
                    "value": float(r["rating"]),
                    "timestamp": float(r["timestamp"]),
                }
                for r in batch
            )
        version = wheel.train(args.model, budget=args.budget)
        print(
            f"{len(train):,} training ratings, {len(hidden)} hidden items, champion "
            f"{version['version']} {version['params']} in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
        results: dict[str, list[float]] = defaultdict(list)
        # The first call loads the champion and fits the content vectors and prior.
        started = time.perf_counter()
        wheel.rank(min(held, key=int), hidden_items)
        first = time.perf_counter() - started
        seconds = 0.0
        for user, gains in sorted(held.items(), key=lambda kv: int(kv[0])):
            started = time.perf_counter()
            answer = wheel.rank(user, hidden_items)
            seconds += time.perf_counter() - started
            results["ours: content scores through candidates"].append(
                ndcg([i["item_id"] for i in answer["items"]], gains)
            )
            order = rng.permutation(len(hidden_items))
            results["random"].append(ndcg([hidden_items[i] for i in order], gains))
            popular = genre_scores(hidden_items, genres, genre_all)
            results["global genre popularity"].append(
                ndcg(ranked_by(hidden_items, popular, rng), gains)
            )
            own = genre_scores(hidden_items, genres, genre_user[user])
            results["genre preference (user's share)"].append(
                ndcg(ranked_by(hidden_items, own, rng), gains)
            )
        wheel.close()

    print(f"\n# Cold start: {len(hidden)} new items ranked from metadata (ml-latest-small)\n")
    print(
        "Command: `python benchmarks/bench_cold_start.py "
        f"--hidden {args.hidden} --model {args.model} --budget {args.budget:g} "
        f"--seed {args.seed}` (load average {load:.1f} at start)."
    )
    print(
        f"{len(held)} users rated hidden items; each ranks all {len(hidden)} through "
        f"`wheel.rank` ({seconds / len(held) * 1e3:.1f} ms per call, the first {first:.1f} s). "
        f"NDCG@{K}, gain = rating.\n"
    )
    print(f"| ranking | NDCG@{K} (mean over users) |\n|---|---|")
    means = {name: float(np.mean(values)) for name, values in results.items()}
    for name, value in means.items():
        print(f"| {name} | {value:.4f} |")
    ours = means.pop("ours: content scores through candidates")
    best_name = max(means, key=lambda n: means[n])
    print(f"\nours / best baseline ({best_name}): **{ours / means[best_name]:.2f}x** (target 1.2)")


if __name__ == "__main__":
    main()
