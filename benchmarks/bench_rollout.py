"""Benchmark: how many users the interleaving stage needs to pick the better ranker, against the
A/B test it precedes, on lists the engine serves, and what the staged rollout does with a better
and a worse candidate.

A world with known tastes: users in taste clusters, items with a cluster and an appeal; the click
probability of an item at a position is known, so which ranker is better is known too (EASE,
personalised, over popularity). Each measurement runs on its own embedded store holding the same
organic history; users arrive in a fixed random order, ask for one list of ten, and click by the
model; users differ in how much they engage (heavy and light users), the variance that
interleaving cancels and an A/B test must average out. After every batch the engine's own
experiment status is read, and the first read at which its decision names a winner gives the
users that stage needed. The peer is the A/B test on the same worlds and users, decided by the
engine as the loop would decide it (always-valid intervals on CTR).

Then the staged flow (``rollout.shadow=true``, ``rollout.experiment="interleaving"``) through the
loop: a better candidate from training to champion, a worse one stopped, and the wall time.

Writes benchmarks/results/rollout.md.

    python benchmarks/bench_rollout.py [--users 6000] [--seeds 5] [--seed 0] [--batch 20]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.report import experiment_status
from dataflywheel.experiments.serving import REFRESH_SECONDS

RESULTS = Path(__file__).parent / "results" / "rollout.md"
K = 10
CLUSTERS = 8
ITEMS = 400
HISTORY = 12
BASE, SAME, APPEAL = 0.02, 0.15, 0.05
ACTIVITY_SIGMA = 1.0  # log-sd of per-user engagement: heavy and light users, as in products
MIN_SAMPLE = 20
DECIDED = ("treatment_better", "treatment_worse")
Row = tuple[str, str, str, str]


@dataclass
class World:
    """Known tastes: P(click) = activity · (BASE + SAME·same cluster + APPEAL·appeal) /
    (1 + 0.3·position); activity (mean 1) is how much a user engages with anything."""

    users: int
    seed: int
    rng: np.random.Generator = field(init=False)
    appeal: np.ndarray = field(init=False)
    activity: np.ndarray = field(init=False)
    clock: float = 1.7e9
    counter: int = 0

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self.appeal = self.rng.beta(1.0, 3.0, ITEMS)
        self.activity = self.rng.lognormal(0.0, ACTIVITY_SIGMA, self.users)
        self.activity /= self.activity.mean()

    def like(self, user: int, items: np.ndarray) -> np.ndarray:
        same = (items % CLUSTERS) == (user % CLUSTERS)
        p = self.activity[user] * (BASE + SAME * same + APPEAL * self.appeal[items])
        return np.minimum(p, 1.0)

    def tick(self, seconds: float = 1.0) -> float:
        self.clock += seconds
        return self.clock

    def event(self, user: int, item: str, rec: str | None = None) -> dict[str, Any]:
        self.counter += 1
        event = {
            "event_id": f"e{self.counter}",
            "user_id": f"u{user}",
            "item_id": item,
            "type": "click",
            "timestamp": self.tick(),
        }
        if rec is not None:
            event["recommendation_id"] = rec
        return event

    def history(self) -> list[dict[str, Any]]:
        """Organic clicks, drawn in proportion to each user's true taste."""
        items = np.arange(ITEMS)
        events = []
        for user in range(self.users):
            p = self.like(user, items)
            for item in self.rng.choice(ITEMS, HISTORY, replace=False, p=p / p.sum()):
                events.append(self.event(user, f"i{item}"))
        return events

    def respond(self, user: int, answer: dict[str, Any]) -> list[dict[str, Any]]:
        items = np.array([int(entry["item_id"][1:]) for entry in answer["items"]])
        p = self.like(user, items) / (1.0 + 0.3 * np.arange(items.size))
        clicked = self.rng.random(items.size) < p
        rec = answer["recommendation_id"]
        return [self.event(user, f"i{item}", rec) for item in items[clicked]]


@contextmanager
def _store(world: World, **settings: Any) -> Iterator[dfw.Flywheel]:
    """A fresh embedded store with the world's organic history."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = dfw.open(
            f"sqlite:///{tmp}/flywheel.db",
            exploration={"name": "greedy"},
            retrain_min_new_events=10**9,
            retrain_interval_seconds=10**9,
            seed=world.seed,
            **settings,
        )
        try:
            wheel.track_many(world.history())
            yield wheel
        finally:
            wheel.close()


def _serve(wheel: dfw.Flywheel, world: World, users: np.ndarray) -> None:
    events: list[dict[str, Any]] = []
    for user in users:
        answer = wheel.recommend(f"u{user}", K, now=world.tick())
        events.extend(world.respond(int(user), answer))
    if events:
        wheel.track_many(events)
    wheel.flush()


def users_to_decide(
    kind: str, better_is_candidate: bool, users: int, seed: int, batch: int
) -> dict[str, Any]:
    """Users (one list each) until the engine's decision names a winner, or the pool runs out."""
    world = World(users, seed)
    with _store(world, rollout={"pre_period_seconds": 0}) as wheel:
        # The first version trained is the champion (the control arm).
        first, second = ("popularity", "ease") if better_is_candidate else ("ease", "popularity")
        control = wheel.train(first, budget=2, now=world.tick())
        candidate = wheel.train(second, budget=2, now=world.tick())
        arms = [
            {"name": "control", "model_version": control["version"], "weight": 50},
            {"name": "candidate", "model_version": candidate["version"], "weight": 50},
        ]
        experiments = wheel.loop.rollout.experiments
        experiment = experiments.create(
            {"type": kind, "arms": arms, "metric": "ctr", "min_sample_size": MIN_SAMPLE},
            now=world.tick(),
        )
        time.sleep(REFRESH_SECONDS)
        order = np.random.default_rng(seed + 1).permutation(users)
        started = time.perf_counter()
        served = 0
        decision: dict[str, Any] = {"verdict": "collecting"}
        while served < users and decision["verdict"] not in DECIDED:
            step = max(batch, served // 10)  # looks every ``batch`` users, then every 10 %
            _serve(wheel, world, order[served : served + step])
            served = min(served + step, users)
            status = experiment_status(
                wheel.store,
                experiments.get(experiment["id"]),
                wheel.loop.rollout.config,
                world.clock,
            )
            decision = status["decision"]
        print(f"  {kind}: {served} users, {decision['reason']}", file=sys.stderr)
        return {
            "users": served,
            "verdict": decision["verdict"],
            "reason": decision["reason"],
            "seconds": time.perf_counter() - started,
        }


def staged_flow(users: int, seed: int, batch: int) -> list[Row]:
    """The loop on its own: shadow → interleaving → champion for EASE over popularity, then a
    worse candidate (popularity again) against the new champion."""
    world = World(users, seed)
    config = RolloutSettings(
        shadow=True,
        experiment="interleaving",
        shadow_min_requests=200,
        min_sample_size=MIN_SAMPLE * 4,
        pre_period_seconds=0,
    )
    rows: list[Row] = []
    with _store(world) as wheel:
        wheel.loop.rollout.config = config
        champion = wheel.train("popularity", budget=2, now=world.tick())
        order = np.random.default_rng(seed + 2).permutation(users)
        started = time.perf_counter()
        candidate = wheel.train("ease", budget=2, now=world.tick())
        step = wheel.loop.gate(candidate, champion, world.tick())
        stages = [f"{step['action']} (offline: {step['gates'][0]['detail']})"]
        served = 0
        while step["action"] in ("shadowing", "experimenting", "waiting") and served < users:
            time.sleep(REFRESH_SECONDS)  # serving sees a new shadow or experiment within 1 s
            _serve(wheel, world, order[served : served + batch])
            served += batch
            step = wheel.run_loop_once(now=world.tick())
            if step["action"] != "waiting":
                stages.append(f"{step['action']} after {served} lists: {step['reason']}")
        decided = [x for x in wheel.loop.rollout.experiments.all() if x["decision"]]
        if decided:
            stages.append(f"experiment verdict {decided[-1]['decision']['verdict']}")
        seconds = time.perf_counter() - started
        promoted = (wheel.registry.champion() or {}).get("version") == candidate["version"]
        rows.append(
            (
                "staged flow, better candidate (EASE over popularity)",
                "promoted" if promoted else f"not promoted ({step['action']})",
                f"{served} lists, {seconds:.1f} s wall (incl. training and 1 s refreshes)",
                "; ".join(stages),
            )
        )
        started = time.perf_counter()
        worse = wheel.train("popularity", budget=2, now=world.tick())
        step = wheel.loop.gate(worse, wheel.registry.champion() or {}, world.tick())
        failed = [g for g in step["gates"] if g["passed"] is False]
        rows.append(
            (
                "staged flow, worse candidate (popularity over EASE)",
                f"{step['action']}, status {wheel.registry.get(worse['version'])['status']}",
                f"{time.perf_counter() - started:.1f} s wall (incl. training)",
                f"stopped at the {failed[0]['name']} gate: {failed[0]['detail']}"
                if failed
                else step["reason"],
            )
        )
    return rows


def _spread(values: list[int]) -> str:
    return f"median {int(np.median(values)):,} (range {min(values):,}–{max(values):,})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=6_000, help="users in the world")
    parser.add_argument("--seeds", type=int, default=5, help="worlds per comparison")
    parser.add_argument("--seed", type=int, default=0, help="the first world's seed")
    parser.add_argument("--batch", type=int, default=20, help="users between two status reads")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[Row] = []
    seeds = range(args.seed, args.seed + args.seeds)
    for better in (True, False):
        runs: dict[str, list[dict[str, Any]]] = {"interleaving": [], "ab": []}
        for seed in seeds:
            for kind in runs:
                runs[kind].append(users_to_decide(kind, better, args.users, seed, args.batch))
                print(
                    f"[{time.perf_counter() - started:6.1f}s] {kind} seed={seed} better={better}",
                    file=sys.stderr,
                )
        right = "treatment_better" if better else "treatment_worse"
        cells = {}
        for kind, results in runs.items():
            users = [r["users"] for r in results]
            correct = sum(r["verdict"] == right for r in results)
            undecided = sum(r["verdict"] not in DECIDED for r in results)
            cells[kind] = f"{_spread(users)} users; right winner {correct}/{len(results)}" + (
                f", {undecided} undecided at {args.users:,}" if undecided else ""
            )
        ratios = [
            ab["users"] / leave["users"]
            for leave, ab in zip(runs["interleaving"], runs["ab"], strict=True)
        ]
        label = (
            "better candidate (EASE vs popularity champion)"
            if better
            else "worse candidate (popularity vs EASE champion)"
        )
        rows.append(
            (
                f"users to decide, {label}",
                f"interleaving: {cells['interleaving']}",
                f"A/B: {cells['ab']}",
                f"A/B ÷ interleaving per world: median {np.median(ratios):.1f}× "
                f"(range {min(ratios):.1f}–{max(ratios):.1f}×)",
            )
        )
    rows.extend(staged_flow(args.users, args.seed, args.batch))
    print(f"[{time.perf_counter() - started:6.1f}s] staged flow", file=sys.stderr)
    elapsed = time.perf_counter() - started
    table = ["| measurement | ours | peer / detail | notes |", "|---|---|---|---|"]
    table += [f"| {' | '.join(row)} |" for row in rows]
    command = " ".join(["python", "benchmarks/bench_rollout.py", *sys.argv[1:]])
    report = "\n".join([
        "# Safe rollout: interleaving against A/B on engine-served lists",
        "",
        f"Command: `{command}` ({args.seeds} worlds from seed {args.seed}, {args.users:,} users"
        f" each; status read every {args.batch} users, then every 10 % more; minimum sample"
        f" {MIN_SAMPLE} users per test).",
        f"Machine: 2 cores, Python {platform.python_version()}, numpy {np.__version__}, SQLite."
        f" Total {elapsed:.0f} s.",
        "",
        *table,
        "",
        f"World: {CLUSTERS} taste clusters, {ITEMS} items, {HISTORY} organic clicks per user;",
        f"P(click) = activity · ({BASE} + {SAME}·same cluster + {APPEAL}·appeal)"
        " / (1 + 0.3·position),",
        f"appeal ~ Beta(1, 3), activity ~ lognormal(0, {ACTIVITY_SIGMA}) scaled to mean 1"
        " (heavy and",
        "light users). Each user asks once for a list of ten (greedy serving, no exploration);",
        "the ground truth makes EASE the better ranker.",
        "Interleaving decides by the sign test on per-user team credit; A/B by the always-valid",
        "interval of the CTR difference (delta method), both as `experiment_status` reports them.",
        "Users to decide: the users exposed when `experiment_status` first named a winner (an",
        "undecided run counts all users). The A/B interval is always valid under peeking; the",
        "interleaving sign test is a fixed-sample test re-read at every look, as the loop reads",
        "it, which favours interleaving somewhat; the right-winner counts show what that costs.",
        "Staged flow: the loop with `rollout.shadow=true`, `rollout.experiment=\"interleaving\"`,",
        f"`shadow_min_requests=200`, `min_sample_size={MIN_SAMPLE * 4}`; an experiment verdict",
        "`not_worse` (no significant preference for the champion at the minimum sample) promotes.",
        "",
    ])  # fmt: skip
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
