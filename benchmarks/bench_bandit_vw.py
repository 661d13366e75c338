"""Contextual bandits: dataflywheel's learners against raw Vowpal Wabbit on the same stream.

Synthetic problem (seeded): 10 actions, 20 dense context features, each action with a category
and 3 dense features; Bernoulli rewards from a hidden logistic model with context × action
interactions. Every learner sees the same contexts and the same reward draws. Throughput counts
rank + reward in-process, including turning the request into features (JSON for ours, VW text
lines for raw VW), per wall-clock second and per CPU second of this process (the latter is less
sensitive to other jobs on a shared machine). Ratios compare with raw VW squarecb, VW's best
exploration setting by reward.

    .venv/bin/python benchmarks/bench_bandit_vw.py [--rounds 100000] [--full-rounds 10000]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import vowpalwabbit

from dataflywheel.decide import create_learner

N_ACTIONS = 10
N_CONTEXT = 20
EXPLORATIONS = {
    "epsilon 0.2": "--epsilon 0.2",
    "squarecb": "--squarecb",
    "bag 5": "--bag 5",
    "cover 3": "--cover 3",
    "softmax": "--softmax --lambda 10",
}
VW_BASE = "--cb_explore_adf --cb_type mtr -q :: --quiet --random_seed 1"


@dataclass
class Problem:
    """Contexts, the actions' JSON, and every action's reward draw per round."""

    contexts: np.ndarray
    actions: list[dict[str, Any]]
    rewards: np.ndarray
    best_mean: float
    random_mean: float

    def context_json(self, t: int) -> list[dict[str, Any]]:
        row = self.contexts[t].tolist()
        return [{"user": {f"f{i}": v for i, v in enumerate(row)}}]


def make_problem(rounds: int, seed: int = 7) -> Problem:
    rng = np.random.default_rng(seed)
    phi = rng.normal(size=(N_ACTIONS, 3))
    kind = np.arange(N_ACTIONS) % 3
    w = rng.normal(scale=0.5, size=(N_CONTEXT, 3))
    u = rng.normal(scale=0.5, size=(N_CONTEXT, 3))
    bias = rng.normal(scale=0.3, size=N_ACTIONS)
    x = rng.normal(size=(rounds, N_CONTEXT))
    logits = -1.0 + bias + np.einsum("ti,ij,kj->tk", x, w, phi) / np.sqrt(3) + (x @ u)[:, kind]
    p = 1.0 / (1.0 + np.exp(-logits))
    actions = [
        {"id": f"a{k}", "features": [{"kind": f"k{kind[k]}", "emb": phi[k].round(4).tolist()}]}
        for k in range(N_ACTIONS)
    ]
    rewards = rng.random(p.shape) < p
    return Problem(x, actions, rewards, float(p.max(1).mean()), float(p.mean()))


PEER = "raw VW squarecb"


@dataclass
class Timing:
    """Wall-clock and CPU seconds spent inside the timed sections."""

    wall: float = 0.0
    cpu: float = 0.0


@dataclass
class Result:
    name: str
    rewards: np.ndarray
    timing: Timing

    def cumulative(self, rounds: int | None = None) -> float:
        return float(self.rewards[:rounds].sum())

    @property
    def rate(self) -> float:
        return len(self.rewards) / self.timing.wall

    @property
    def cpu_rate(self) -> float:
        return len(self.rewards) / self.timing.cpu


def run_ours(problem: Problem, config: dict[str, Any], rounds: int) -> tuple[np.ndarray, Timing]:
    learner = create_learner({"seed": 1, **config})
    rng = np.random.default_rng(1)
    got = np.zeros(rounds)
    spent = Timing()
    actions = problem.actions
    for t in range(rounds):
        context = problem.context_json(t)
        start, cpu = time.perf_counter(), time.process_time()
        ranking = learner.rank(context, actions, rng=rng)
        chosen = ranking.chosen_index
        reward = float(problem.rewards[t, chosen])
        learner.learn(
            context, actions, chosen, ranking.chosen_probability, reward, encoding=ranking.encoding
        )
        spent.wall += time.perf_counter() - start
        spent.cpu += time.process_time() - cpu
        got[t] = reward
    return got, spent


def vw_action_lines(problem: Problem) -> list[str]:
    lines = []
    for a in problem.actions:
        f = a["features"][0]
        emb = " ".join(f"emb[{i}]:{v}" for i, v in enumerate(f["emb"]))
        lines.append(f"|a _id={a['id']} kind={f['kind']} {emb}")
    return lines


def run_raw_vw(problem: Problem, explore: str, rounds: int) -> tuple[np.ndarray, Timing]:
    """Vowpal Wabbit used directly: text lines, predict, sample, learn."""
    ws = vowpalwabbit.Workspace(f"{VW_BASE} {explore}")
    rng = np.random.default_rng(1)
    action_lines = vw_action_lines(problem)
    names = [f"user.f{i}" for i in range(N_CONTEXT)]
    got = np.zeros(rounds)
    spent = Timing()
    for t in range(rounds):
        row = problem.contexts[t].tolist()
        start, cpu = time.perf_counter(), time.process_time()
        shared = "shared |c " + " ".join(f"{n}:{v}" for n, v in zip(names, row, strict=True))
        lines = [shared, *action_lines]
        pmf = np.asarray(ws.predict(lines))
        chosen = min(int(np.searchsorted(np.cumsum(pmf), rng.random() * pmf.sum())), N_ACTIONS - 1)
        reward = float(problem.rewards[t, chosen])
        lines[chosen + 1] = f"0:{-reward}:{pmf[chosen]} {lines[chosen + 1]}"
        ws.learn(lines)
        spent.wall += time.perf_counter() - start
        spent.cpu += time.process_time() - cpu
        got[t] = reward
    ws.finish()
    return got, spent


def contenders(full_rounds: int) -> Iterator[tuple[str, Callable[[Problem, int], Any], int | None]]:
    """(name, runner, rounds cap) for every contender; full-covariance ones run fewer rounds."""
    ours = {
        "ours linear-ts": {"algorithm": "linear-ts"},
        "ours linear-ucb": {"algorithm": "linear-ucb"},
        "ours vw (Personalizer: epsilon 0.2)": {"algorithm": "vw"},
        "ours linear-ts full cov (bits 10)": {
            "algorithm": "linear-ts",
            "covariance": "full",
            "bits": 10,
        },
        "ours linear-ts diagonal (bits 10)": {"algorithm": "linear-ts", "bits": 10},
    }
    for name, cfg in ours.items():
        cap = full_rounds if "bits 10" in name else None
        yield name, lambda p, n, c=cfg: run_ours(p, c, n), cap
    for name, explore in EXPLORATIONS.items():
        yield f"raw VW {name}", lambda p, n, e=explore: run_raw_vw(p, e, n), None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100_000)
    parser.add_argument("--full-rounds", type=int, default=10_000)
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "bandit_vw.md"
    )
    args = parser.parse_args()
    args.load = os.getloadavg()[0]
    problem = make_problem(args.rounds)
    results: list[Result] = []
    for name, run, cap in contenders(args.full_rounds):
        n = min(args.rounds, cap or args.rounds)
        got, timing = run(problem, n)
        results.append(Result(name, got, timing))
        print(
            f"{name:40s} rounds {n:7d} reward {got.mean():.4f} {n / timing.wall:8.0f} rounds/s "
            f"{n / timing.cpu:8.0f} rounds/CPU s",
            flush=True,
        )
    write_report(args, problem, results)


def write_report(args: argparse.Namespace, problem: Problem, results: list[Result]) -> None:
    short = min(args.full_rounds, args.rounds)
    peer = next(r for r in results if r.name == PEER)
    rows = [
        "| learner | rounds | cumulative reward | mean reward | "
        f"mean reward, first {short} | rank+reward rounds/s | rounds per CPU s | "
        f"÷ {PEER} (wall, CPU) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rows.append(
            f"| {r.name} | {len(r.rewards)} | {r.cumulative():.0f} | {r.rewards.mean():.4f} | "
            f"{r.rewards[:short].mean():.4f} | {r.rate:,.0f} | {r.cpu_rate:,.0f} | "
            f"{r.rate / peer.rate:.2f}, {r.cpu_rate / peer.cpu_rate:.2f} |"
        )
    full = [r for r in results if len(r.rewards) == len(peer.rewards)]
    best = max((r for r in full if r.name.startswith("ours")), key=lambda r: r.cumulative())
    best_vw = max((r for r in full if r.name.startswith("raw VW")), key=lambda r: r.cumulative())
    summary = (
        f"Best of ours: {best.name}, cumulative reward {best.cumulative():.0f} vs {best_vw.name} "
        f"{best_vw.cumulative():.0f} (× {best.cumulative() / best_vw.cumulative():.3f}); "
        f"{best.rate:,.0f} vs {best_vw.rate:,.0f} rounds/s (× {best.rate / best_vw.rate:.2f}), "
        f"{best.cpu_rate:,.0f} vs {best_vw.cpu_rate:,.0f} rounds per CPU second "
        f"(× {best.cpu_rate / best_vw.cpu_rate:.2f})."
    )
    text = "\n".join(
        [
            "# Contextual bandits: dataflywheel vs Vowpal Wabbit",
            "",
            "Command: `.venv/bin/python benchmarks/bench_bandit_vw.py "
            f"--rounds {args.rounds} --full-rounds {args.full_rounds}`",
            "",
            f"Machine: 2 cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}, vowpalwabbit {vowpalwabbit.__version__}; "
            f"one process, runs one after another; 1-minute load average at start: "
            f"{args.load:.1f} (other jobs share the cores).",
            "",
            "Problem: 10 actions, 20 dense context features, actions with a category and 3 dense "
            "features, Bernoulli rewards from a hidden logistic model with context × action "
            f"interactions (seed 7). Best possible mean reward {problem.best_mean:.4f}, uniform "
            f"random {problem.random_mean:.4f}. All learners see the same stream; full-covariance "
            f"and bits-10 rows run the first {short} rounds only.",
            "",
            *rows,
            "",
            summary,
            "",
        ]
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
