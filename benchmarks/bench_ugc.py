"""Content cold start on a catalogue that changes every day: the ``ugc`` scenario, on vs off.

    python benchmarks/bench_ugc.py [--days 60] [--users 1000] [--seed 0] [--jobs 3]

The same seeded ``ugc`` run (creators upload items with categories and titles every day) is
played on an embedded store with the setting ``content_cold_start`` on, off, and on with the
uploads' content withheld (no categories, title or description; ``creator_id`` kept). From each
store's KPIs (``wheel.kpis()``, the ``supply`` object): the share of clicks on items younger than
7 days and the median seconds from an item's creation to its first strong signal; from the
simulation: DAU on the last day. Printed side by side with the ratio on / off, with the wall time
and the load average before and after. The ratio is on / off (and on / withheld). The three
runs are independent (each its own store), so ``--jobs`` plays them in parallel processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import dataflywheel as dfw
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.scenarios import get_scenario

VARIANTS = {"on": (True, True), "off": (False, True), "withheld": (True, False)}


def play(label: str, days: int, users: int, seed: int, scratch: str) -> dict[str, Any]:
    cold_start, content = VARIANTS[label]
    base = get_scenario("ugc")
    scenario = dataclasses.replace(
        base,
        content=content,
        engine_settings={**base.engine_settings, "content_cold_start": cold_start},
    )
    url = f"sqlite:///{Path(scratch) / f'{label}.db'}"
    started = time.perf_counter()
    with open_engine(scenario, seed, db=url) as engine:
        simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
        simulation.run()
    seconds = time.perf_counter() - started
    with dfw.open(url) as wheel:
        supply = wheel.kpis()["supply"]
    summary = simulation.summary()
    return {
        "new_item_click_share": supply["new_item_click_share"],
        "median_seconds_to_first_strong_signal": supply["median_seconds_to_first_strong_signal"],
        "median_seconds_to_first_impression": supply["median_seconds_to_first_impression"],
        "dau_last_day": simulation.reports[-1].dau,
        "items_uploaded": summary["items_uploaded"],
        "quality_last_week": summary["quality_last_week"],
        "seconds": round(seconds, 1),
    }


def _ratio(a: Any, b: Any) -> str:
    return (
        f"{a / b:.2f}" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=3, help="Runs played at once.")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="bench-ugc-") as scratch,
        ProcessPoolExecutor(max_workers=args.jobs) as pool,
    ):
        futures = {
            label: pool.submit(play, label, args.days, args.users, args.seed, scratch)
            for label in VARIANTS
        }
        runs = {label: future.result() for label, future in futures.items()}
    load_after = os.getloadavg()
    print(f"ugc, {args.days} days, {args.users} users, seed {args.seed}: content cold start")
    print(f"{'':38}" + "".join(f"{h:>13}" for h in (*VARIANTS, "on/off", "on/withheld")))
    for key in runs["on"]:
        on, off, withheld = (runs[label][key] for label in VARIANTS)
        cells = [str(on), str(off), str(withheld), _ratio(on, off), _ratio(on, withheld)]
        print(f"{key:38}" + "".join(f"{c:>13}" for c in cells))
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")
    print(json.dumps({"runs": runs, "load": [load_before[0], load_after[0]]}))


if __name__ == "__main__":
    main()
