"""Benchmark: how long a simulated day takes, where the time goes, and what the loop buys.

1. ``flywheel demo`` end to end (both runs side by side, as the command does it): wall time
   against the 120 s target for 60 days × 1 000 users.
2. ``flywheel`` and ``static`` one after the other in this process, with the time of each phase
   (simulation, ingest, recommend, train) per simulated day and per engine call.
3. The outcome: DAU, events and true quality with the loop on (flywheel) and off (static).

Writes benchmarks/results/simulator.md.

    python benchmarks/bench_simulator.py [--days 60] [--users 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dataflywheel.simulate import get_scenario, new_simulation, open_engine, run_demo, verdict

RESULTS = Path(__file__).parent / "results" / "simulator.md"
TARGET_SECONDS = 120.0


def timed_run(name: str, days: int, users: int, seed: int) -> dict[str, Any]:
    """One scenario on a temporary store; its document, phase seconds and call counts."""
    scenario = get_scenario(name)
    started = time.perf_counter()
    with open_engine(scenario, seed) as engine:
        simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
        simulation.run()
    return {
        "wall": time.perf_counter() - started,
        "document": simulation.document(seed),
        "seconds": dict(simulation.timings.seconds),
        "calls": dict(simulation.timings.calls),
    }


def phase_rows(name: str, run: dict[str, Any], days: int) -> list[str]:
    rows = []
    for phase, seconds in run["seconds"].items():
        calls = run["calls"].get(phase, 0)
        per_call = f"{1000 * seconds / calls:.2f} ms × {calls:,}" if calls else "-"
        rows.append(f"| {name} | {phase} | {seconds:.1f} s | {seconds / days:.3f} s | {per_call} |")
    rows.append(f"| {name} | **total** | {run['wall']:.1f} s | {run['wall'] / days:.3f} s | |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    days, users, seed = args.days, args.users, args.seed

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        demo = run_demo(f"sqlite:///{Path(scratch) / 'demo.db'}", days=days, users=users, seed=seed)
        demo_wall = time.perf_counter() - started
    print(f"demo: {demo_wall:.1f} s (target {TARGET_SECONDS:.0f} s)", file=sys.stderr)
    runs = {name: timed_run(name, days, users, seed) for name in ("flywheel", "static")}
    for name, run in runs.items():
        print(f"{name}: {run['wall']:.1f} s {run['seconds']}", file=sys.stderr)

    on, off = (runs[n]["document"]["summary"] for n in ("flywheel", "static"))
    outcome = [
        "| | flywheel (loop on) | static (trained once) |",
        "|---|---|---|",
        *(
            f"| {label} | {on[key]:,} | {off[key]:,} |"
            for label, key in (
                ("DAU, day 1", "dau_first_day"),
                (f"DAU, day {days}", "dau_last_day"),
                ("DAU, mean of the last week", "dau_mean_last_week"),
                ("events (feedback sent)", "events"),
                ("strong events", "strong_events"),
                ("users brought by referrals", "users_referred"),
                ("true quality (NDCG@10), first week", "quality_first_week"),
                ("true quality (NDCG@10), last week", "quality_last_week"),
                ("model versions served", "model_versions"),
            )
        ),
    ]
    command = f"python benchmarks/bench_simulator.py --days {days} --users {users} --seed {seed}"
    lines = [
        "# Simulator: time per simulated day, and what the loop buys",
        "",
        f"Command: `{command}`.",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}; other jobs may "
        "have shared the machine (timings are upper bounds).",
        "",
        f"## `flywheel demo --days {days} --users {users}` end to end",
        "",
        f"**{demo_wall:.1f} s** (target ≤ {TARGET_SECONDS:.0f} s): the `flywheel` run in the main "
        "process and the `static` run in a child process, side by side.",
        "",
        f"> {verdict(demo['comparison'])}",
        "",
        "## Where a simulated day goes (each scenario alone, one after the other)",
        "",
        "| scenario | phase | total | per simulated day | per call |",
        "|---|---|---|---|---|",
        *phase_rows("flywheel", runs["flywheel"], days),
        *phase_rows("static", runs["static"], days),
        "",
        "`simulate` is the simulator's own work (choices, feedback, ground-truth quality); "
        "`ingest` is `track_many` (one batch per round of requests) and `upsert_items`; "
        "`recommend` is the engine serving and logging each list; `train` is `run_loop_once` "
        "(snapshot, a three-trial model search beside the serving configuration, holdout gate, "
        "promotion) for "
        "`flywheel`, a single `train` after day 1 for `static`.",
        "",
        "## Outcome: the same users and catalogue with the loop on and off",
        "",
        *outcome,
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
