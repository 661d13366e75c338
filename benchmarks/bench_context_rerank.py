"""The contextual re-ranker on generated logs: its off-policy check, and the true clicks per
list it brings against the champion's own ranking, with and without a context effect.

    python benchmarks/bench_context_rerank.py [--lists 20000] [--epsilon 0.2] [--seed 0]

A generated world with a known click probability: 2 000 users, each liking two of four item
categories (15 items each); a user clicks an item of a liked category with probability 0.20,
another with 0.03, times a device factor. With context, on mobile categories c0 and c1 are
clicked 1.75 times as often and c2 and c3 a quarter as often, on desktop the reverse, tablets
are neutral: a user who likes c0 and c2 wants c0 on a phone and c2 at a desk. Without context
every factor is 1. Each user has six earlier clicks (five in the liked categories) and an
item-kNN champion is trained on them. Then ``--lists`` requests (random user and device, k 5)
are served through the engine with ε-greedy exploration, and clicks are drawn from the truth
and tracked with the list's recommendation id.

``flywheel context-rerank fit`` (``fit_and_check``) fits the re-ranker on the older half and
judges it on the newer half. The figure: on 4 000 fresh requests, the true expected clicks
per list (the sum of the click probabilities, no sampling noise) of the greedy re-ranked lists
over those of the champion's greedy lists, with the check's verdict; without context the
check must refuse.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from typing import Any

import numpy as np

import dataflywheel as dfw
from dataflywheel.loop.context_gate import fit_and_check

DAY = 86_400.0
CATEGORIES = 4
PER_CATEGORY = 15
USERS = 2_000
K = 5
DEVICES = ("mobile", "desktop", "tablet")
UP, DOWN = 1.75, 0.25
FACTOR = {
    ("mobile", 0): UP,
    ("mobile", 1): UP,
    ("mobile", 2): DOWN,
    ("mobile", 3): DOWN,
    ("desktop", 0): DOWN,
    ("desktop", 1): DOWN,
    ("desktop", 2): UP,
    ("desktop", 3): UP,
}


def category(item: str) -> int:
    return int(item[1])


def click_probability(liked: np.ndarray, device: str, item: str, context: bool) -> float:
    base = 0.20 if category(item) in liked else 0.03
    return base * (FACTOR.get((device, category(item)), 1.0) if context else 1.0)


def run(context: bool, lists: int, epsilon: float, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    items = [f"c{c}i{i}" for c in range(CATEGORIES) for i in range(PER_CATEGORY)]
    liked = np.array([rng.choice(CATEGORIES, 2, replace=False) for _ in range(USERS)])
    start = time.time() - 60 * DAY
    settings: dict[str, Any] = {
        "exploration": {"name": "epsilon_greedy", "epsilon": epsilon, "shadow": False},
        "seed": seed,
        "context_fields": ["device"],
        "content_cold_start": False,
    }
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{os.path.join(tmp, 'flywheel.db')}"
        with dfw.open(url, **settings) as wheel:
            wheel.upsert_items([{"id": i, "categories": [f"c{category(i)}"]} for i in items])
            history = []
            for u in range(USERS):
                own = [i for i in items if category(i) in liked[u]]
                picks = [*rng.choice(own, 5, replace=False), rng.choice(items)]
                history += [
                    {"user_id": f"u{u}", "item_id": str(i), "type": "click", "timestamp": start + n}
                    for n, i in enumerate(picks)
                ]
            wheel.track_many(history)
            champion = wheel.train("itemknn", budget=20)
            served_at = time.perf_counter()
            clicks: list[dict[str, Any]] = []
            ts = start + DAY
            for n in range(lists):
                ts = start + DAY + n * 60.0
                u = int(rng.integers(USERS))
                device = DEVICES[int(rng.integers(len(DEVICES)))]
                answer = wheel.recommend(f"u{u}", K, context={"device": device}, now=ts)
                clicks += [
                    {
                        "user_id": f"u{u}",
                        "item_id": item["item_id"],
                        "type": "click",
                        "timestamp": ts + 1,
                        "recommendation_id": answer["recommendation_id"],
                    }
                    for item in answer["items"]
                    if rng.random() < click_probability(liked[u], device, item["item_id"], context)
                ]
                if n % 50 == 49:
                    wheel.track_many(clicks)
                    clicks = []
            wheel.track_many(clicks)
            wheel.flush()
            served_seconds = time.perf_counter() - served_at
            checked_at = time.perf_counter()
            report = fit_and_check(wheel.store, wheel.registry, wheel.settings, now=ts + 60)
            check_seconds = time.perf_counter() - checked_at
        greedy = {**settings, "exploration": {"name": "greedy"}}
        with dfw.open(url, **greedy) as wheel:
            truth = {"reranked": 0.0, "base": 0.0}
            fresh = 4_000
            for _ in range(fresh):
                u = int(rng.integers(USERS))
                device = DEVICES[int(rng.integers(len(DEVICES)))]
                for name, ctx in (("reranked", {"device": device}), ("base", None)):
                    answer = wheel.recommend(f"u{u}", K, context=ctx, exclude_consumed=False)
                    truth[name] += sum(
                        click_probability(liked[u], device, i["item_id"], context)
                        for i in answer["items"]
                    )
    return {
        "context": context,
        "champion": champion["name"],
        "verdict": report["verdict"],
        "evaluation": report["evaluation"],
        "truth": {name: value / fresh for name, value in truth.items()},
        "serve_seconds": served_seconds,
        "check_seconds": check_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lists", type=int, default=20_000)
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"load before: {os.getloadavg()}")
    for context in (True, False):
        result = run(context, args.lists, args.epsilon, args.seed)
        ev, truth = result["evaluation"], result["truth"]
        label = "with a device effect" if context else "without a device effect"
        print(f"\n{label}: {args.lists} lists, ε {args.epsilon}, champion {result['champion']}")
        print(
            f"  check: {result['verdict']}; held-out lists {ev['lists']}, changed "
            f"{ev['lists_changed']:.0%}; iips clicks per list re-ranked "
            f"{ev['reranked']['value']:.4f} [{ev['reranked']['low']:.4f}, "
            f"{ev['reranked']['high']:.4f}] (ESS {ev['reranked']['ess']:.0f}) vs base "
            f"{ev['base']['value']:.4f}"
        )
        ratio = truth["reranked"] / truth["base"]
        state = "on" if result["verdict"] == "pass" else "off"
        print(
            f"  truth on 4000 fresh requests (greedy, re-ranker {state}): "
            f"re-ranked {truth['reranked']:.4f} vs base {truth['base']:.4f} clicks per list, "
            f"ratio {ratio:.3f}"
        )
        print(
            f"  serving {args.lists} lists {result['serve_seconds']:.1f} s, "
            f"fit and check {result['check_seconds']:.1f} s"
        )
    print(f"\nload after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
