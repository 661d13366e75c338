"""The value of data against the truth: the simulator, injected noise, and MovieLens.

1. ``doubling``: simulate 60 days (scenario ``flywheel``) per seed; from the store as it was at
   day 30 alone, predict the NDCG@10 gain of growing the data to what day 60 holds (the curve
   by users, fitted and evaluated at the real growth of the training events, about a doubling);
   then measure the gain: NDCG@10 of the same configuration on the day-60 store minus on the
   day-30 store, each on its own temporal holdout (the same protocol). A hit is a measured gain
   inside the prediction's ``measured_low``..``measured_high`` interval.
2. ``noise``: the same stores plus random ``view`` events (random user, random item, random
   time, as many as 40% of the simulated item events): the ablation of ``view`` should say
   "no detectable value" (or "harmful"), removing the strong signals "carries value".
3. ``movielens``: ml-latest-small's ratings as ``rating`` (value = stars) plus 100 000 random
   ``view`` events: ``view`` should have no value (or harm), ``rating`` carry value.

The configuration measured is the default (itemknn), the same at day 30 and day 60.

    .venv/bin/python benchmarks/bench_value.py [--part all|doubling|noise|movielens]
        [--seeds 10] [--users 300] [--days 60] [--budget 600]

Writes benchmarks/results/value.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import delete, func, select

import dataflywheel as dfw
from _report import publish
from dataflywheel.learn.value import assess
from dataflywheel.learn.value import curve as curves
from dataflywheel.learn.value.data import (
    DEFAULT_MODEL,
    Config,
    ValueData,
    resample_weights,
)
from dataflywheel.simulate import get_scenario, new_simulation, open_engine
from dataflywheel.store import schema

DAY = 86_400.0
RESULTS = Path(__file__).parent / "results" / "value.md"
RATINGS = Path("/work/shared/data/ml-latest-small/ratings.csv")
NOISE_SHARE = 0.4
REPLICATES = 1000


def config() -> Config:
    name, params, matrix = DEFAULT_MODEL
    return Config(name, dict(params), dict(matrix), None)


def simulate(path: Path, seed: int, users: int, days: int) -> float:
    """Run the scenario into the SQLite store at ``path`` (kept: a second run reuses it);
    returns the simulation's start."""
    marker = path.with_suffix(".start")
    if marker.exists():
        return float(marker.read_text())
    scenario = get_scenario("flywheel")
    with open_engine(scenario, seed, db=f"sqlite:///{path}") as engine:
        simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
        simulation.run()
    marker.write_text(repr(simulation.start))
    return simulation.start


def watermark_before(wheel: dfw.Flywheel, moment: float) -> int:
    e = schema.events.c
    with wheel.store.read() as conn:
        found = conn.execute(select(func.max(e.id)).where(e.ts < moment)).scalar_one()
    return int(found or 0)


def doubling(wheel: dfw.Flywheel, start: float, days: int, seed: int) -> dict[str, Any]:
    """Predicted (from the first half of the days) and measured (at the end) gain."""
    half = watermark_before(wheel, start + days / 2 * DAY)
    rng = np.random.default_rng([seed, 5])
    early = ValueData(wheel.store, config(), upto=half)
    weights = resample_weights(len(early.eval_users), REPLICATES, rng)
    full = early.ndcg(early.train, early.eval_users)
    deadline = time.monotonic() + 3600
    by_users, _ = curves.measure(early, "users", curves.FRACTIONS, deadline, seed, full)
    by_time, _ = curves.measure(early, "time", curves.FRACTIONS, deadline, seed, full)
    late = ValueData(wheel.store, config())
    at_end = late.ndcg(late.train, late.eval_users)
    end_weights = resample_weights(len(late.eval_users), REPLICATES, rng)
    replicates = end_weights @ at_end - weights @ full  # two independent holdouts
    low, high = np.percentile(replicates, [2.5, 97.5])
    truth = {"value": float(at_end.mean() - full.mean()), "low": low, "high": high}
    n_early = float(early.train.sum())
    ratio = float(late.train.sum()) / n_early
    predicted = curves.gain_between(by_users, weights, n_early, ratio * n_early, seed)
    from_time = curves.gain_between(by_time, weights, n_early, ratio * n_early, seed)
    return {
        "seed": seed,
        "events_day_half": int(n_early),
        "events_day_end": int(late.train.sum()),
        "ratio": ratio,
        "ndcg": (float(full.mean()), float(at_end.mean())),
        "predicted": predicted,
        "from_time": from_time,
        "truth": truth,
        "covered": predicted["measured_low"] <= truth["value"] <= predicted["measured_high"],
        "covered_mean": predicted["low"] <= truth["value"] <= predicted["high"],
        "covered_time": from_time["measured_low"] <= truth["value"] <= from_time["measured_high"],
    }


def inject_views(wheel: dfw.Flywheel, count: int, low: float, high: float, seed: int) -> None:
    """``count`` random ``view`` events: random known user, random item, random time."""
    rng = np.random.default_rng([seed, 9])
    u, i = schema.users.c, schema.items.c
    with wheel.store.read() as conn:
        users = [r[0] for r in conn.execute(select(u.user_id))]
        items = [r[0] for r in conn.execute(select(i.item_id))]
    picks_u = rng.integers(len(users), size=count)
    picks_i = rng.integers(len(items), size=count)
    stamps = rng.uniform(low, high, size=count)
    events = [
        {
            "event_id": f"noise-{seed}-{n}",
            "user_id": users[a],
            "item_id": items[b],
            "type": "view",
            "timestamp": float(t),
        }
        for n, (a, b, t) in enumerate(zip(picks_u, picks_i, stamps, strict=True))
    ]
    for begin in range(0, len(events), 10_000):
        wheel.track_many(events[begin : begin + 10_000])


def verdicts(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        s["name"]: {k: s[k] for k in ("delta", "low", "high", "verdict")}
        for s in document["slices"]
    }


def noise(wheel: dfw.Flywheel, start: float, days: int, seed: int, budget: float) -> dict:
    """Verdicts with random views added; then again with only the strong signals and the
    views (in the simulator every strong signal sits on an item the user also clicked and
    watched, so on the full store removing them changes weights, not which items a row holds).
    """
    item_events = int(wheel.store.latest_event_id())
    inject_views(wheel, int(NOISE_SHARE * item_events), start, start + days * DAY, seed)
    document = assess(wheel.store, wheel.registry, budget=budget, seed=seed, config=config())
    found = verdicts(document)
    signals = wheel.settings.signals
    weak = [t for t in found if t in signals and not signals[t].strong and t != "view"]
    with wheel.store.write() as conn:
        conn.execute(delete(schema.events).where(schema.events.c.type.in_(weak)))
    strong_only = assess(wheel.store, wheel.registry, budget=budget, seed=seed, config=config())
    only = verdicts(strong_only)
    return {
        "seed": seed,
        "view": found.get("view"),
        "strong": found.get("strong signals"),
        "watch": found.get("watch"),
        "click": found.get("click"),
        "view_strong_only": only.get("view"),
        "strong_strong_only": only.get("strong signals"),
        "complete": document["complete"] and strong_only["complete"],
    }


def movielens(workdir: Path, views: int, budget: float) -> dict[str, Any]:
    ratings = np.loadtxt(RATINGS, delimiter=",", skiprows=1)
    with dfw.open(f"sqlite:///{workdir / 'movielens.db'}") as wheel:
        events = [
            {
                "event_id": f"r{n}",
                "user_id": str(int(u)),
                "item_id": str(int(m)),
                "type": "rating",
                "value": float(v),
                "timestamp": float(t),
            }
            for n, (u, m, v, t) in enumerate(ratings)
        ]
        for begin in range(0, len(events), 10_000):
            wheel.track_many(events[begin : begin + 10_000])
        low, high = float(ratings[:, 3].min()), float(ratings[:, 3].max())
        inject_views(wheel, views, low, high, 0)
        started = time.monotonic()
        document = assess(wheel.store, wheel.registry, budget=budget, config=config())
        seconds = time.monotonic() - started
    return {
        "slices": verdicts(document),
        "curve": [(p["fraction"], round(p["ndcg"], 4)) for p in document["curve"]],
        "next_doubling": document["next_doubling"],
        "complete": document["complete"],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", default="all", choices=["all", "doubling", "noise", "movielens"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--views", type=int, default=100_000)
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--workdir", help="Keep the simulated stores here (reused when present).")
    args = parser.parse_args()
    lines = [
        f"# Value of data ({time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.1f})",
        "",
    ]
    with tempfile.TemporaryDirectory(prefix="bench-value-") as scratch:
        workdir = Path(args.workdir or scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        if args.part in ("all", "doubling", "noise"):
            doubling_rows, noise_rows, failed = [], [], []
            seed = -1
            # Seeds whose simulation fails are skipped (and reported) until enough succeeded.
            while max(len(doubling_rows), len(noise_rows)) < args.seeds and seed < 2 * args.seeds:
                seed += 1
                path = workdir / f"sim-{seed}.db"
                began = time.monotonic()
                try:
                    start = simulate(path, seed, args.users, args.days)
                except Exception as exc:  # an engine failure during the run: say so, go on
                    failed.append(f"seed {seed}: the simulation failed: {exc!r}")
                    print(failed[-1], flush=True)
                    continue
                simulated = time.monotonic() - began
                with dfw.open(f"sqlite:///{path}") as wheel:
                    if args.part in ("all", "doubling"):
                        row = doubling(wheel, start, args.days, seed)
                        doubling_rows.append(row)
                        p = row["predicted"]
                        print(
                            f"seed {seed}: simulated in {simulated:.0f} s; ×{row['ratio']:.2f} "
                            f"events, predicted {p['gain']:+.4f} [{p['measured_low']:+.4f}, "
                            f"{p['measured_high']:+.4f}], measured {row['truth']['value']:+.4f}"
                            f" -> {'covered' if row['covered'] else 'MISSED'}; by time "
                            f"{row['from_time']['gain']:+.4f}",
                            flush=True,
                        )
                if args.part in ("all", "noise"):
                    noisy = path.with_name(f"noise-{seed}.db")
                    shutil.copyfile(path, noisy)  # the simulated store stays clean for reuse
                    with dfw.open(f"sqlite:///{noisy}") as wheel:
                        found = noise(wheel, start, args.days, seed, args.budget)
                    noise_rows.append(found)
                    print(f"seed {seed} noise: {found}", flush=True)
            lines += report_doubling(doubling_rows) + report_noise(noise_rows)
            lines += [*failed, ""] if failed else []
        if args.part in ("all", "movielens"):
            found = movielens(workdir, args.views, args.budget)
            print(f"movielens: {found}", flush=True)
            lines += report_movielens(found)
    publish(lines, RESULTS)


def report_doubling(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        "## Predicting the gain of the second half of the data (simulator, flywheel scenario)",
        "",
        "Prediction from the store at day 30 (curve by users, evaluated at the real growth of the"
        " training events); truth: NDCG@10 at day 60 minus NDCG@10 at day 30, each on its own"
        " temporal holdout (the same protocol).",
        "",
        "| seed | training events day 30 → 60 | NDCG@10 day 30 → 60 | predicted gain"
        " [expected 95%] [measured 95%] | measured gain [95%] | covered | curve by time |",
        "|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in rows:
        p, t, q = r["predicted"], r["truth"], r["from_time"]
        lines.append(
            f"| {r['seed']} | {r['events_day_half']:,} → {r['events_day_end']:,} "
            f"(×{r['ratio']:.2f}) | {r['ndcg'][0]:.4f} → {r['ndcg'][1]:.4f} | "
            f"{p['gain']:+.4f} [{p['low']:+.4f}, {p['high']:+.4f}] "
            f"[{p['measured_low']:+.4f}, {p['measured_high']:+.4f}] | "
            f"{t['value']:+.4f} [{t['low']:+.4f}, {t['high']:+.4f}] | "
            f"{'yes' if r['covered'] else 'no'} | {q['gain']:+.4f} |"
        )
    n = len(rows)
    hits = sum(r["covered"] for r in rows)
    mean_hits = sum(r["covered_mean"] for r in rows)
    time_hits = sum(r["covered_time"] for r in rows)
    lines += [
        "",
        f"Covered by the measured-gain interval: **{hits}/{n}**; by the interval of the expected"
        f" gain alone: {mean_hits}/{n}; by the same prediction from the curve by time:"
        f" {time_hits}/{n}.",
        "",
    ]
    return lines


def report_noise(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    lines = [
        f"## Injected noise: random `view` events ({NOISE_SHARE:.0%} of the simulated events)",
        "",
        "Full store: the simulator's events plus the views. Strong only: the same store without"
        " the weak simulated types (click, watch, skip), i.e. strong signals plus the views.",
        "",
        "| seed | view (full) | strong signals (full) | watch (full) | view (strong only) |"
        " strong signals (strong only) |",
        "|---:|---|---|---|---|---|",
    ]

    def cell(entry: dict[str, Any] | None) -> str:
        if entry is None:
            return "not measured"
        return (
            f"{entry['delta']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}] {entry['verdict']}"
        )

    keys = ("view", "strong", "watch", "view_strong_only", "strong_strong_only")
    for r in rows:
        lines.append(f"| {r['seed']} | " + " | ".join(cell(r[k]) for k in keys) + " |")

    def count(key: str, verdict: str) -> int:
        return [(r[key] or {}).get("verdict") for r in rows].count(verdict)

    n = len(rows)
    lines += [
        "",
        f"Full store: `view` no detectable value {count('view', 'no detectable value')}/{n}, "
        f"harmful {count('view', 'harmful')}/{n}; strong signals carry value "
        f"{count('strong', 'carries value')}/{n}; watch carries value "
        f"{count('watch', 'carries value')}/{n}.",
        f"Strong only: `view` no detectable value "
        f"{count('view_strong_only', 'no detectable value')}/{n}, harmful "
        f"{count('view_strong_only', 'harmful')}/{n}; strong signals carry value "
        f"{count('strong_strong_only', 'carries value')}/{n}.",
        "",
    ]
    return lines


def report_movielens(found: dict[str, Any]) -> list[str]:
    lines = ["## ml-latest-small ratings + random `view` events", ""]
    for name, entry in found["slices"].items():
        lines.append(
            f"- {name}: delta {entry['delta']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]"
            f" → {entry['verdict']}"
        )
    d = found["next_doubling"]
    lines += [
        f"- curve (fraction, NDCG@10): {found['curve']}",
        f"- next doubling: {d['gain']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]",
        f"- measured in {found['seconds']:.0f} s (complete: {found['complete']})",
        "",
    ]
    return lines


if __name__ == "__main__":
    main()
