"""CPU cost of the exploration policy on the serving hot path, on ml-latest-small with EASE.

    python benchmarks/bench_exploration_cost.py [--users 300] [--rounds 7] [--budget 30]

The ratings are imported into a fresh SQLite store with `flywheel import events` and EASE is
trained through the engine (`wheel.train("ease")`). One engine then answers in-process
`wheel.recommend(user, 10)` for the same users under each policy: greedy (no exploration: the
floor any policy pays), uniform ε-greedy (ε = 0.05, shadow off: the previous default) and the
default (``aimed_epsilon``). The policy is swapped on the same engine and the policies take
turns in every round (order rotated), so drift on a shared machine hits all of them alike.
CPU time of the calling thread per call (impressions are stored by a background thread, the
same work for every policy), median over rounds, and the ratio to greedy.

Then the policy's own cost alone: ``policy.rank`` on the score vectors (and lazy counts) serving
really passed it, captured from the same calls; and the cost of reading the candidates' counts:
all of them (what serving gathered on every request before the counts were read lazily) and
the 35 just below the list that the default policy reads.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import dataflywheel as dfw
from dataflywheel.serve.exploration import Policy, RankedList, make_policy

REPO = Path(__file__).resolve().parents[1]
K = 10
WINDOW = np.arange(K, 45)  # positions of the items just below the list (top 3, pool 5)
POLICIES: dict[str, dict[str, Any]] = {
    "greedy": {"name": "greedy"},
    "epsilon_greedy (ε 0.05)": {"name": "epsilon_greedy", "epsilon": 0.05, "shadow": False},
    "aimed_epsilon (default)": {"name": "aimed_epsilon"},
}


class Recorder:
    """Stands in for the serving policy to capture what serving passes to ``rank``."""

    def __init__(self, policy: Policy) -> None:
        self.policy, self.name, self.uses_counts = policy, policy.name, policy.uses_counts
        self.calls: list[tuple[np.ndarray, np.ndarray, Any]] = []

    def rank(
        self,
        item_ids: np.ndarray,
        scores: np.ndarray,
        k: int,
        rng: np.random.Generator,
        counts: Any = None,
    ) -> RankedList:
        self.calls.append((item_ids.copy(), scores.copy(), counts))
        return self.policy.rank(item_ids, scores, k, rng, counts)


def cpu_per_call(call: Callable[[Any], Any], inputs: list[Any]) -> float:
    """CPU µs of this thread per call over ``inputs``."""
    start = time.thread_time()
    for value in inputs:
        call(value)
    return (time.thread_time() - start) / len(inputs) * 1e6


def interleaved(
    calls: dict[str, Callable[[Any], Any]], inputs: list[Any], rounds: int
) -> dict[str, float]:
    """Median over rounds of each call's CPU µs, the calls taking turns (order rotated)."""
    names = list(calls)
    for name in names:  # warm-up
        cpu_per_call(calls[name], inputs[:20])
    seen: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seen[name].append(cpu_per_call(calls[name], inputs))
    return {name: float(np.median(values)) for name, values in seen.items()}


def table(title: str, costs: dict[str, float], base: str) -> None:
    print(f"\n{title}\n| | CPU µs per call | vs {base} |\n|---|---:|---:|")
    for name, cost in costs.items():
        print(f"| {name} | {cost:,.1f} | {cost / costs[base]:.3f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget", type=float, default=30.0, help="training budget, seconds")
    parser.add_argument("--db", default=None, help="reuse a store with a champion (no import)")
    args = parser.parse_args()
    ratings = args.data / "ratings.csv"
    user_ids = np.unique(np.loadtxt(ratings, delimiter=",", skiprows=1, usecols=0, dtype=int))
    users = [str(u) for u in np.random.default_rng(0).choice(user_ids, args.users, False)]
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or f"sqlite:///{tmp}/exploration.db"
        if args.db is None:
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
        wheel = dfw.open(db, loop_enabled=False)
        try:
            version = wheel.registry.champion() or wheel.train("ease", budget=args.budget)
            print(f"model {version['name']} {version['params']}", flush=True)
            service = wheel.serving
            policies = {name: make_policy(config) for name, config in POLICIES.items()}

            def serve_with(policy: Policy) -> Callable[[str], Any]:
                def call(user: str) -> Any:
                    service.policy = policy
                    return wheel.recommend(user, K)

                return call

            load = os.getloadavg()
            served = interleaved(
                {name: serve_with(p) for name, p in policies.items()}, users, args.rounds
            )
            recorder = Recorder(policies["aimed_epsilon (default)"])
            service.policy = recorder  # type: ignore[assignment]
            for user in users:
                wheel.recommend(user, K)
            wheel.flush()
        finally:
            wheel.close()
    rng = np.random.default_rng(0)
    ranked = interleaved(
        {
            name: (lambda call, p=p: p.rank(call[0], call[1], K, rng, call[2]))
            for name, p in policies.items()
        },
        recorder.calls,
        args.rounds,
    )
    gathered = interleaved(
        {"all": lambda call: np.asarray(call[2]), "window": lambda call: call[2][WINDOW]},
        recorder.calls,
        args.rounds,
    )
    load = tuple(max(a, b) for a, b in zip(load, os.getloadavg(), strict=True))
    sizes = [c[0].size for c in recorder.calls]
    print(
        f"\n{len(users)} users x {args.rounds} rounds, k = {K}, candidates per user: median "
        f"{int(np.median(sizes)):,}; load average (1, 5, 15 min, higher of start and end): "
        + ", ".join(f"{x:.2f}" for x in load)
    )
    table("In-process wheel.recommend(user, 10):", served, "greedy")
    ranked["counts of every candidate (the gathering serving no longer does)"] = gathered["all"]
    ranked["counts of the 35 items below the list (what aimed_epsilon reads)"] = gathered["window"]
    table("policy.rank alone on the same score vectors:", ranked, "greedy")
    extra = served["aimed_epsilon (default)"] - served["epsilon_greedy (ε 0.05)"]
    print(
        f"\naimed_epsilon - epsilon_greedy: {extra:+.1f} µs per recommend call "
        f"({extra / served['epsilon_greedy (ε 0.05)']:+.1%})"
    )


if __name__ == "__main__":
    main()
