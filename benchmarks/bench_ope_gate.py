"""Benchmark: simulated days until the shadow gate reaches a verdict at the default ε = 0.05, for a
clearly better and a clearly worse candidate, with ε spent on uniform slots or on the shadow's
whole lists, beside the old matched-positions gate.

Each run is the simulator (``dataflywheel.simulate``) on an embedded store: users visit for
``--warmup`` days while serving shows the cold-start list, then a champion is trained and a
candidate is put in shadow mode, and the days go on with ε-greedy serving (ε = 0.05), its ε
either on uniformly drawn slots (``uniform``: ``shadow: false``) or on the candidate's whole list
(``aimed``: the default, :class:`dataflywheel.serve.exploration.ShadowExplore`). Better:
champion popularity, candidate item-kNN. Worse: champion item-kNN, candidate popularity. After
every simulated day both gates read the same shadow traffic:

- new: :func:`dataflywheel.loop.ope_gate.shadow_evidence` (every position, pass / fail / no
  evidence, with ESS);
- old: the matched-positions SNIPW of :func:`dataflywheel.loop.shadow_report.shadow_report`,
  passing when the upper bound reaches the champion's value less the margin, and saying nothing
  with fewer than 20 matched positions.

    python benchmarks/bench_ope_gate.py [--users 1000] [--days 7] [--warmup 2] [--seeds 3]
        [--epsilon 0.05] [--modes uniform,aimed] [--cases better,worse]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from dataflywheel.loop.ope_gate import shadow_evidence
from dataflywheel.loop.shadow_report import shadow_report
from dataflywheel.simulate.engine import EmbeddedEngine
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.runner import DAY
from dataflywheel.simulate.scenarios import get_scenario

MARGIN = 0.05
CASES = {"better": ("popularity", "itemknn"), "worse": ("itemknn", "popularity")}


def old_verdict(report: dict[str, Any]) -> str:
    ope, base = report["ope"], report["champion_value"]
    if ope is None or base is None:
        return "no evidence"
    return "pass" if ope["high"] >= base * (1 - MARGIN) else "fail"


def run(
    case: str, mode: str, seed: int, users: int, days: int, warmup: int, epsilon: float
) -> list[dict[str, Any]]:
    champion_model, candidate_model = CASES[case]
    policy = {"name": "epsilon_greedy", "epsilon": epsilon, "shadow": mode == "aimed"}
    exploration = {"exploration": policy}
    # The benchmark trains; the loop never runs.
    scenario = replace(get_scenario("no-learning"), engine_settings=exploration)
    rows = []
    with open_engine(scenario, seed) as engine:
        assert isinstance(engine, EmbeddedEngine)
        wheel = engine.wheel
        sim = new_simulation(engine, scenario, days=warmup + days, users=users, seed=seed)
        for day in range(1, warmup + 1):
            sim.run_day(day)
        since = sim.start + warmup * DAY
        wheel.train(champion_model, budget=30, now=since - 1)
        candidate = wheel.train(candidate_model, budget=30, now=since - 1)["version"]
        wheel.registry.set_status(candidate, "shadow", "benchmark", since - 1)
        time.sleep(1.1)  # serving re-reads shadow versions once a second
        for day in range(warmup + 1, warmup + days + 1):
            sim.run_day(day)
            wheel.flush()
            now = sim.start + day * DAY
            new = shadow_evidence(
                wheel.store, candidate, since, now, margin=MARGIN, horizon=days * DAY
            )
            old = shadow_report(wheel.store, candidate, since, min_matches=20)
            rows.append(
                {
                    "day": day - warmup,
                    "new": new["verdict"],
                    "lift": new.get("lift"),
                    "low": new.get("low"),
                    "high": new.get("high"),
                    "ess": new.get("ess"),
                    "max_weight": new.get("max_weight"),
                    "lists": new.get("lists"),
                    "days_needed": new.get("days_needed"),
                    "epsilon_for_horizon": new.get("epsilon_for_deadline"),
                    "old": old_verdict(old),
                    "old_matches": old["matches"],
                }
            )
            print(case, mode, seed, rows[-1], flush=True)
    return rows


def first(rows: list[dict[str, Any]], key: str) -> str:
    for row in rows:
        if row[key] != "no evidence":
            return f"{row[key]} on day {row['day']}"
    return f"no evidence after {len(rows)} days"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epsilon", type=float, default=0.05)
    parser.add_argument("--modes", default="uniform,aimed")
    parser.add_argument("--cases", default=",".join(CASES))
    args = parser.parse_args()
    lines = [
        f"| case | exploration | seed | new gate | old gate (matched positions) | ESS / lists at "
        f"verdict or end | largest weight | lift [95% interval] at verdict or end | more days "
        f"needed at ε = {args.epsilon} |"
    ]
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases.split(","):
        for mode in args.modes.split(","):
            for seed in range(args.seeds):
                rows = run(case, mode, seed, args.users, args.days, args.warmup, args.epsilon)
                decided = next((r for r in rows if r["new"] != "no evidence"), rows[-1])
                more = rows[-1]["days_needed"]
                interval = (
                    "-"
                    if decided["lift"] is None
                    else f"{decided['lift']:+.3f} [{decided['low']:+.3f}, {decided['high']:+.3f}]"
                )
                lines.append(
                    f"| {case} | {mode} | {seed} | {first(rows, 'new')} | {first(rows, 'old')} | "
                    f"{decided['ess']:.0f} / {decided['lists']} | {decided['max_weight']:.0f} | "
                    f"{interval} | {'-' if more is None else f'{more:.0f}'} |"
                )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
