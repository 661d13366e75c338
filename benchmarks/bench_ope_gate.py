"""Benchmark: simulated days until the shadow gate reaches a verdict at the default ε = 0.05, for a
candidate that is better or worse in truth, beside the true lift the simulator knows.

Each run is the simulator (``dataflywheel.simulate``) on an embedded store: ``--warmup`` days
of the demo (the ``flywheel`` scenario: the loop retrains and promotes daily), then the loop
stops, a champion and a candidate are trained on the same data, the candidate goes into shadow
mode, and the days go on with ε-greedy serving (ε = 0.05) aimed at the candidate's whole lists
(the default while a shadow is evaluated, :class:`dataflywheel.serve.exploration.ShadowExplore`).
Better: champion popularity, candidate iALS; worse: the reverse (iALS and popularity are the
registered models farthest apart on the demo's data); worse-demo: the champion the demo's loop
promoted, candidate popularity. After every simulated day three readings of the same shadow
traffic:

- the gate: :func:`dataflywheel.loop.ope_gate.shadow_evidence` (pass / fail / no evidence, with
  an anytime-valid interval);
- the same estimate with a fixed-sample 95% interval (± 1.96 standard errors), looked at daily:
  what the gate would say if it ignored its repeated looks;
- the old matched-positions SNIPW of :func:`dataflywheel.loop.shadow_report.shadow_report`,
  passing when its upper bound reaches the champion's value less the margin.

Ground truth: for every served list, the user's true utilities at that moment
(:class:`dataflywheel.simulate.truth.RecordingEngine`) give its expected reward
(:func:`dataflywheel.simulate.truth.expected_reward`, the simulator's own choice model, in the
gate's unit: positive feedback per list). The candidate's true value is the mean over the lists
it served, the champion's over the lists the champion served: two random shares of the same
requests, so their difference is the true lift up to the sampling of requests (a standard error
of about 0.01).

    python benchmarks/bench_ope_gate.py [--users 1000] [--days 7] [--warmup 8] [--seeds 3]
        [--first-seed 0] [--epsilon 0.05] [--cases better,worse,worse-demo]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.loop.ope_gate import MIN_ESS, shadow_evidence
from dataflywheel.loop.shadow_report import shadow_report
from dataflywheel.simulate.engine import EmbeddedEngine
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.runner import DAY, Simulation
from dataflywheel.simulate.scenarios import get_scenario
from dataflywheel.simulate.truth import RecordingEngine, expected_reward
from dataflywheel.store import schema
from dataflywheel.store.store import Store

MARGIN = 0.05
Z = 1.96
# None: keep the champion the demo's loop promoted.
CASES: dict[str, tuple[str | None, str]] = {
    "better": ("popularity", "ials"),
    "worse": ("ials", "popularity"),
    "worse-demo": (None, "popularity"),
}


@dataclass
class Truth:
    """True expected reward of the served lists, by branch, over the requests seen so far."""

    candidate: list[float] = field(default_factory=list)
    champion: list[float] = field(default_factory=list)
    served: list[float] = field(default_factory=list)

    def add(self, store: Store, version: str, sim: Simulation, recorder: RecordingEngine) -> None:
        """The served lists of the requests the candidate scored since the last call.

        The lists the candidate served itself are its lists exactly as ranked at the request
        (the sidecar's lists for the other requests are ranked later, on a history that may
        already hold the user's answer to the request, which flatters a personalised model), and
        a random share of all requests: their mean is the candidate's true value per list.
        """
        s, i = schema.shadow_results.c, schema.impressions.c
        with store.read() as conn:
            rows = conn.execute(
                select(s.recommendation_id, i.item_ids, i.policy, i.model_version)
                .select_from(
                    schema.shadow_results.join(
                        schema.impressions, s.recommendation_id == i.recommendation_id
                    )
                )
                .where(s.version == version)
            ).all()
        rows = [r for r in rows if r[0] in recorder.available and r[1]]
        if not rows:
            return
        k = max(len(r[1]) for r in rows)
        lists = [[sim.index[item] for item in r[1]] + [-1] * (k - len(r[1])) for r in rows]
        available = np.stack([recorder.available.pop(r[0]) for r in rows])
        served = expected_reward(sim.choice, available, sim.population.bait, lists)
        self.served.extend(served.tolist())
        for r, value in zip(rows, served, strict=True):
            own = r[2] == "shadow_explore" and r[3] == version
            (self.candidate if own else self.champion).append(float(value))

    def lift(self) -> float:
        return float(np.mean(self.candidate) - np.mean(self.champion))


def verdict(low: float, high: float, floor: float, ess: float) -> str:
    if ess >= MIN_ESS and low >= floor:
        return "pass"
    if ess >= MIN_ESS and high < floor:
        return "fail"
    return "no evidence"


def old_verdict(report: dict[str, Any]) -> str:
    ope, base = report["ope"], report["champion_value"]
    if ope is None or base is None:
        return "no evidence"
    return "pass" if ope["high"] >= base * (1 - MARGIN) else "fail"


def run(
    case: str, seed: int, users: int, days: int, warmup: int, epsilon: float
) -> list[dict[str, Any]]:
    champion_model, candidate_model = CASES[case]
    exploration = {"exploration": {"name": "epsilon_greedy", "epsilon": epsilon, "shadow": True}}
    scenario = replace(get_scenario("flywheel"), engine_settings=exploration)
    rows = []
    with open_engine(scenario, seed) as engine:
        assert isinstance(engine, EmbeddedEngine)
        wheel = engine.wheel
        recorder = RecordingEngine(engine)
        sim = new_simulation(recorder, scenario, days=warmup + days, users=users, seed=seed)
        recorder.simulation = sim
        for day in range(1, warmup + 1):
            sim.run_day(day)
        # From here the benchmark trains and the loop no longer runs.
        sim.scenario = replace(scenario, retrain="never")
        since = sim.start + warmup * DAY
        if champion_model is not None:
            champion = wheel.train(champion_model, budget=30, now=since - 1)
            if champion["status"] != "champion":
                wheel.registry.promote(champion["version"], "benchmark", since - 1)
        candidate = wheel.train(candidate_model, budget=30, now=since - 1)["version"]
        wheel.registry.set_status(candidate, "shadow", "benchmark", since - 1)
        time.sleep(1.1)  # serving re-reads the champion and the shadow versions once a second
        recorder.recording = True
        truth = Truth()
        for day in range(warmup + 1, warmup + days + 1):
            sim.run_day(day)
            wheel.flush()
            truth.add(wheel.store, candidate, sim, recorder)
            now = sim.start + day * DAY
            new = shadow_evidence(
                wheel.store, candidate, since, now, margin=MARGIN, horizon=days * DAY
            )
            old = shadow_report(wheel.store, candidate, since, min_matches=20)
            true_lift = truth.lift()
            row: dict[str, Any] = {
                "day": day - warmup,
                "new": new["verdict"],
                "true_lift": true_lift,
                "true_champion": float(np.mean(truth.champion)),
                "true_candidate": float(np.mean(truth.candidate)),
                "ess": new.get("ess", 0.0),
                "lists": new.get("lists"),
                "days_needed": new.get("days_needed"),
                "old": old_verdict(old),
            }
            if "lift" in new:
                fixed = (new["lift"] - Z * new["std"], new["lift"] + Z * new["std"])
                row |= {
                    "lift": new["lift"],
                    "low": new["low"],
                    "high": new["high"],
                    "floor": new["floor"],
                    "covers": new["low"] <= true_lift <= new["high"],
                    "fixed": verdict(*fixed, new["floor"], new["ess"]),
                    "fixed_covers": fixed[0] <= true_lift <= fixed[1],
                }
            rows.append(row)
            print(case, seed, row, flush=True)
    return rows


def first(rows: list[dict[str, Any]], key: str) -> str:
    for row in rows:
        if row.get(key, "no evidence") != "no evidence":
            return f"{row[key]} on day {row['day']}"
    return f"no evidence after {len(rows)} days"


def line(case: str, seed: int, rows: list[dict[str, Any]]) -> str:
    decided = next((r for r in rows if r["new"] != "no evidence"), rows[-1])
    estimated = [r for r in rows if "lift" in r]
    interval = (
        "-"
        if "lift" not in decided
        else f"{decided['lift']:+.3f} [{decided['low']:+.3f}, {decided['high']:+.3f}]"
    )
    more = rows[-1]["days_needed"]
    covered = sum(r["covers"] for r in estimated)
    fixed_covered = sum(r["fixed_covers"] for r in estimated)
    return (
        f"| {case} | {seed} | {decided['true_champion']:.3f} → "
        f"{decided['true_candidate']:.3f} ({decided['true_lift']:+.3f}) | {first(rows, 'new')} | "
        f"{interval} | {covered} / {len(estimated)} | {decided['ess']:.0f} / {decided['lists']} | "
        f"{first(rows, 'fixed')} ({fixed_covered} / {len(estimated)}) | {first(rows, 'old')} | "
        f"{'-' if more is None else f'{more:.0f}'} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--cases", default="better,worse")
    args = parser.parse_args()
    lines = [
        "| case | seed | true value per list, champion → candidate (true lift) "
        "| gate (anytime 95%) | estimated lift [interval] at verdict or end | days the "
        "interval covers the truth | own lists (ESS) / lists | fixed 95% interval looked at "
        "daily (days covering) | old gate (matched positions) | more days needed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case in args.cases.split(","):
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            rows = run(case, seed, args.users, args.days, args.warmup, args.epsilon)
            lines.append(line(case, seed, rows))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
