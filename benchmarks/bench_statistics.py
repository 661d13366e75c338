"""Benchmark: do dataflywheel.experiments' statistics keep their promises, at scale?

Runs the Monte Carlo checks of tests/experiments with more simulations, against peers in the same
run: scipy's Welch t-test (and the naive "peek every day" use of it), and GrowthBook's gbstats on
the same data when it is available (``--gbstats-python`` names an interpreter that has it; gbstats
pins numpy < 2, so it usually lives in its own virtualenv). Prints a table and writes it to
benchmarks/results/statistics.md.

    python benchmarks/bench_statistics.py [--sims 10000] [--gbstats-python /tmp/gbvenv/bin/python]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy import stats

from dataflywheel.experiments import (
    analyze,
    interleaving_sample_size,
    preference_test,
    sample_size,
    srm,
    team_draft,
)

ALPHA = 0.05
RESULTS = Path(__file__).parent / "results" / "statistics.md"
Row = tuple[str, str, str, str]


def _timed(label: str, rows: list[Row], run: Callable[[], list[Row]]) -> None:
    start = time.perf_counter()
    new = run()
    print(f"[{time.perf_counter() - start:6.1f}s] {label}", file=sys.stderr)
    rows.extend(new)


def _band(rate: float, sims: int) -> str:
    return f"{rate:.4f} ± {1.96 * math.sqrt(rate * (1 - rate) / sims):.4f}"


def aa_fixed(rng: np.random.Generator, sims: int) -> list[Row]:
    """A/A false-positive rate of one look, ours vs scipy's Welch test on the same data."""
    control, treatment = rng.lognormal(0, 1, (sims, 500)), rng.lognormal(0, 1, (sims, 500))
    ours = np.array(
        [analyze(control=c, treatment=t).p_value for c, t in zip(control, treatment, strict=True)]
    )
    scipy_p = stats.ttest_ind(treatment, control, axis=1, equal_var=False).pvalue
    return [
        ("A/A false-positive rate, fixed, 1 look", _band(float(np.mean(ours < ALPHA)), sims),
         f"scipy Welch: {np.mean(scipy_p < ALPHA):.4f}",
         f"≤ 0.05; max abs p difference to scipy {np.max(np.abs(ours - scipy_p)):.1e}"),
    ]  # fmt: skip


def aa_peeking(rng: np.random.Generator, sims: int, looks: int = 14, daily: int = 100) -> list[Row]:
    """A/A with a look every day: naive t-test vs the always-valid confidence sequence."""
    control = rng.lognormal(0, 1, (sims, looks * daily))
    treatment = rng.lognormal(0, 1, (sims, looks * daily))
    naive = np.zeros(sims, dtype=bool)
    for day in range(1, looks + 1):
        cut = day * daily
        p = stats.ttest_ind(treatment[:, :cut], control[:, :cut], axis=1, equal_var=False).pvalue
        naive |= p < ALPHA
    sequential = np.zeros(sims, dtype=bool)
    for i in range(sims):
        sequential[i] = any(
            analyze(
                control=control[i, : d * daily], treatment=treatment[i, : d * daily],
                method="sequential",
            ).significant
            for d in range(1, looks + 1)
        )  # fmt: skip
    label = f"A/A false-positive rate, {looks} daily looks ({daily}/arm/day)"
    return [
        (label + ", sequential", _band(float(sequential.mean()), sims),
         f"naive t-test peeking: {naive.mean():.4f}", "≤ 0.05"),
    ]  # fmt: skip


def peeking_power(
    rng: np.random.Generator, sims: int, lift: float = 0.25, looks: int = 14, daily: int = 100
) -> list[Row]:
    """The price of always-valid inference: power with daily looks vs one fixed final look."""
    control = rng.lognormal(0, 1, (sims, looks * daily))
    treatment = rng.lognormal(0, 1, (sims, looks * daily)) + lift
    final = stats.ttest_ind(treatment, control, axis=1, equal_var=False).pvalue < ALPHA
    first_day = np.full(sims, np.inf)
    for i in range(sims):
        for d in range(1, looks + 1):
            cut = d * daily
            if analyze(control=control[i, :cut], treatment=treatment[i, :cut],
                       method="sequential").significant:  # fmt: skip
                first_day[i] = d
                break
    found = np.isfinite(first_day)
    mean_day = float(first_day[found].mean()) if found.any() else float("nan")
    return [
        (f"Power, true lift {lift} (sd ≈ 2.2), sequential with 14 daily looks",
         f"{found.mean():.3f}", f"fixed, single look on day 14: {final.mean():.3f}",
         f"sequential stops on day {mean_day:.1f} on average"),
    ]  # fmt: skip


def coverage(rng: np.random.Generator, sims: int, true_lift: float = 0.3) -> list[Row]:
    """How often the fixed 95% interval contains a known lift (skewed metric)."""
    control = rng.lognormal(0, 1, (sims, 400))
    treatment = rng.lognormal(0, 1, (sims, 400)) + true_lift
    hits = sum(
        (r := analyze(control=c, treatment=t)).low <= true_lift <= r.high
        for c, t in zip(control, treatment, strict=True)
    )
    return [("Coverage of the 95% CI of a known lift", _band(hits / sims, sims), "", "0.95 ± 0.02")]


def cuped(rng: np.random.Generator, sims: int, n: int = 500) -> list[Row]:
    """Empirical variance reduction of the CUPED lift vs the theoretical rho^2."""
    rows: list[Row] = []
    for rho in (0.3, 0.5, 0.7, 0.9):
        pre = rng.normal(0, 1, (2, sims, n))
        post = rho * pre + math.sqrt(1 - rho**2) * rng.normal(0, 1, (2, sims, n))
        plain = np.empty(sims)
        adjusted = np.empty(sims)
        for i in range(sims):
            plain[i] = analyze(control=post[0, i], treatment=post[1, i]).lift
            adjusted[i] = analyze(
                control=post[0, i], treatment=post[1, i],
                pre_control=pre[0, i], pre_treatment=pre[1, i],
            ).lift  # fmt: skip
        empirical = 1 - adjusted.var() / plain.var()
        rows.append((f"CUPED variance reduction, rho = {rho}", f"{empirical:.3f}", "",
                     f"theory rho² = {rho**2:.3f}"))  # fmt: skip
    return rows


def srm_checks(rng: np.random.Generator, sims: int) -> list[Row]:
    """SRM on the 50.6/49.4 split, its power when assignment really is 50.6%, false alarms."""
    fixed = srm([50_600, 49_400], [0.5, 0.5])
    biased = rng.binomial(100_000, 0.506, sims)
    fair = rng.binomial(100_000, 0.5, sims * 5)
    detect = np.mean([srm([a, 100_000 - a], [0.5, 0.5]).mismatch for a in biased])
    alarms = np.mean([srm([a, 100_000 - a], [0.5, 0.5]).mismatch for a in fair])
    return [
        ("SRM, 50 600 / 49 400 of 100 000 (expected 50/50)",
         f"p = {fixed.p_value:.2e}, chi² = {fixed.statistic:.1f}", "", "mismatch (p < 0.001)"),
        ("SRM detection rate, true split 50.6/49.4, 100k users", f"{detect:.4f}", "", ""),
        ("SRM false alarms, fair 50/50 splits", _band(float(alarms), sims * 5), "",
         "0.001 = the level of the test"),
    ]  # fmt: skip


def click_model(
    users: int, rng: np.random.Generator, k: int = 10, items: int = 40
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-user engagement under ranker A, under B, and A's minus B's credit when interleaved.

    Users differ in sessions (lognormal rate) and in the value of a click (lognormal watch time);
    rankers sort items by the user's true relevance plus noise (A: sd 0.25, B: sd 0.30).
    Clicks follow a position-based model: P(click at rank r) = relevance / log2(r + 2).
    """
    relevance = rng.beta(1.0, 3.0, (users, items))
    sessions = 1 + rng.poisson(rng.lognormal(1.5, 1.0, users))[:, None]
    value = rng.lognormal(0.0, 1.0, users)
    examine = 1.0 / np.log2(np.arange(k) + 2.0)
    rank_a = np.argsort(-(relevance + rng.normal(0, 0.25, (users, items))), axis=1)[:, :k]
    rank_b = np.argsort(-(relevance + rng.normal(0, 0.30, (users, items))), axis=1)[:, :k]

    def clicks(shown: np.ndarray) -> np.ndarray:
        return rng.binomial(sessions, examine * np.take_along_axis(relevance, shown, axis=1))

    merged = np.empty((users, k), dtype=np.int64)
    team_a = np.empty((users, k), dtype=bool)
    for u in range(users):
        shown, teams = team_draft(rank_a[u].tolist(), rank_b[u].tolist(), k, rng)
        merged[u] = shown
        team_a[u] = np.asarray(teams) == "A"
    interleaved = clicks(merged) * value[:, None]
    margin = np.where(team_a, interleaved, -interleaved).sum(axis=1)
    return value * clicks(rank_a).sum(axis=1), value * clicks(rank_b).sum(axis=1), margin


def interleaving_vs_ab(rng: np.random.Generator, users: int, reps: int = 1000) -> list[Row]:
    """Users needed for 80% power: A/B on engagement per user vs team-draft interleaving."""
    eng_a, eng_b, margin = click_model(users, rng)
    sd = math.sqrt((eng_a.var(ddof=1) + eng_b.var(ddof=1)) / 2)
    ab_users = 2 * sample_size(float(eng_b.mean()), sd, float(eng_a.mean() - eng_b.mean()))
    wins_a, wins_b = int(np.sum(margin > 0)), int(np.sum(margin < 0))
    share, ties = wins_a / (wins_a + wins_b), float(np.mean(margin == 0))
    il_users = interleaving_sample_size(share, ties)
    il_power = np.mean([
        preference_test(np.maximum(m, 0), np.maximum(-m, 0)).winner == "A"
        for m in (rng.choice(margin, il_users) for _ in range(reps))
    ])  # fmt: skip
    half = ab_users // 2
    ab_power = np.mean([
        analyze(control=rng.choice(eng_b, half), treatment=rng.choice(eng_a, half)).significant
        for _ in range(reps // 4)
    ])  # fmt: skip
    lift = eng_a.mean() / eng_b.mean() - 1
    return [
        (f"A/B users for 80% power (engagement lift {lift:.1%})", f"{ab_users:,}",
         f"empirical power {ab_power:.3f}", ""),
        (f"Interleaving users for 80% power (A preferred {share:.3f}, ties {ties:.2f})",
         f"{il_users:,}", f"empirical power {il_power:.3f}", ""),
        ("A/B users ÷ interleaving users", f"{ab_users / il_users:.0f}×", "",
         "Netflix (2017): > 100×"),
    ]  # fmt: skip


_GBSTATS_SCRIPT = """
import json, sys
from gbstats.models.statistics import SampleMeanStatistic as S, RegressionAdjustedStatistic as R
from gbstats.frequentist.tests import (TwoSidedTTest, SequentialTwoSidedTTest, FrequentistConfig,
    SequentialConfig)
out = []
for d in json.load(sys.stdin):
    arms = [(S(n=a["n"], sum=a["sy"], sum_squares=a["syy"]),
             S(n=a["n"], sum=a["sx"], sum_squares=a["sxx"]), a["sxy"]) for a in d]
    plain = [y for y, _, _ in arms]
    adj = [R(n=y.n, post_statistic=y, pre_statistic=x, post_pre_sum_of_products=p, theta=0)
           for y, x, p in arms]
    fixed = FrequentistConfig(difference_type="absolute")
    seq = SequentialConfig(difference_type="absolute", sequential_tuning_parameter=5000)
    row = {}
    for name, test in (
        ("fixed", TwoSidedTTest(plain[0], plain[1], fixed)),
        ("cuped", TwoSidedTTest(adj[0], adj[1], fixed)),
        ("sequential", SequentialTwoSidedTTest(plain[0], plain[1], seq)),
    ):
        r = test.compute_result()
        row[name] = [r.expected, r.ci[0], r.ci[1], r.p_value]
    out.append(row)
print(json.dumps(out))
"""


def _gbstats_python(cli_value: str | None) -> str | None:
    candidates = [cli_value, os.environ.get("GBSTATS_PYTHON"), sys.executable]
    for python in filter(None, candidates):
        probe = subprocess.run([python, "-c", "import gbstats"], capture_output=True, check=False)
        if probe.returncode == 0:
            return python
    return None


def versus_gbstats(rng: np.random.Generator, datasets: int, python: str | None) -> list[Row]:
    """Max absolute difference from gbstats on the same data (fixed, CUPED, sequential)."""
    if python is None:
        return [("gbstats comparison", "skipped: gbstats not importable", "", "")]
    data, ours = [], []
    for _ in range(datasets):
        n_c, n_t = rng.integers(50, 3000, 2)
        rho, lift = rng.uniform(0, 0.95), rng.normal(0, 0.1)
        x_c, x_t = rng.lognormal(0, 0.8, n_c), rng.lognormal(0, 0.8, n_t)
        y_c = rho * x_c + rng.exponential(1, n_c)
        y_t = rho * x_t + rng.exponential(1, n_t) + lift
        data.append([
            {"n": int(y.size), "sy": float(y.sum()), "syy": float(y @ y), "sx": float(x.sum()),
             "sxx": float(x @ x), "sxy": float(x @ y)}
            for y, x in ((y_c, x_c), (y_t, x_t))
        ])  # fmt: skip
        ours.append({
            "fixed": analyze(control=y_c, treatment=y_t),
            "cuped": analyze(control=y_c, treatment=y_t, pre_control=x_c, pre_treatment=x_t),
            "sequential": analyze(control=y_c, treatment=y_t, method="sequential"),
        })  # fmt: skip
    done = subprocess.run(
        [python, "-c", _GBSTATS_SCRIPT], input=json.dumps(data), capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    theirs = json.loads(done.stdout)
    rows: list[Row] = []
    for name in ("fixed", "cuped", "sequential"):
        diff = max(
            max(abs(a - b) for a, b in zip(
                (o[name].lift, o[name].low, o[name].high, o[name].p_value), t[name], strict=True))
            for o, t in zip(ours, theirs, strict=True)
        )  # fmt: skip
        agree = sum(
            o[name].significant == (t[name][3] < ALPHA) for o, t in zip(ours, theirs, strict=True)
        )
        rows.append((
            f"vs gbstats 0.8.0, {name}: max abs difference of lift, CI ends, p",
            f"{diff:.1e}", f"same decision in {agree}/{datasets} datasets", "≈ 0",
        ))  # fmt: skip
    return rows


def speed(rng: np.random.Generator) -> list[Row]:
    control, treatment = rng.normal(0, 1, 10_000), rng.normal(0, 1, 10_000)
    start = time.perf_counter()
    for _ in range(500):
        analyze(control=control, treatment=treatment, pre_control=control, pre_treatment=treatment)
    per_call = (time.perf_counter() - start) / 500
    return [("analyze with CUPED, 2 × 10 000 units", f"{per_call * 1e3:.2f} ms/call", "", "")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=10_000, help="simulated experiments per check")
    parser.add_argument("--users", type=int, default=100_000, help="users in the click model")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--gbstats-python", default=None, help="interpreter that imports gbstats")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    sims = args.sims
    rows: list[Row] = []
    started = time.perf_counter()
    _timed("A/A fixed", rows, lambda: aa_fixed(rng, sims))
    _timed("A/A peeking", rows, lambda: aa_peeking(rng, max(sims // 2, 100)))
    _timed("peeking power", rows, lambda: peeking_power(rng, max(sims // 5, 100)))
    _timed("coverage", rows, lambda: coverage(rng, sims))
    _timed("CUPED", rows, lambda: cuped(rng, max(sims // 2, 100)))
    _timed("SRM", rows, lambda: srm_checks(rng, sims))
    _timed("interleaving", rows, lambda: interleaving_vs_ab(rng, args.users))
    python = _gbstats_python(args.gbstats_python)
    _timed("gbstats", rows, lambda: versus_gbstats(rng, 300, python))
    _timed("speed", rows, lambda: speed(rng))
    elapsed = time.perf_counter() - started
    table = ["| check | ours | peer / detail | expected |", "|---|---|---|---|"]
    table += [f"| {' | '.join(row)} |" for row in rows]
    command = " ".join(["python", "benchmarks/bench_statistics.py", *sys.argv[1:]])
    report = "\n".join([
        "# Statistics of experiments: simulation benchmark",
        "",
        f"Command: `{command}` (seed {args.seed}, {sims} simulations per check; peeking and CUPED"
        f" use {max(sims // 2, 100)} per setting).",
        f"Machine: 2 cores, Python {platform.python_version()}, numpy {np.__version__};"
        f" gbstats via `{python or 'not available'}`. Total {elapsed:.0f} s.",
        "",
        *table,
        "",
        "Rates are shown ± a 95% binomial margin. A/A data are lognormal (skewed, like revenue).",
        "Peeking: 14 looks, 100 new units per arm per day; the naive row applies scipy's Welch",
        "t-test at every look, the sequential row our always-valid confidence sequence",
        "(tuning 5000). The interleaving model is described in `click_model` of the script.",
        "gbstats pins numpy < 2, so it runs in its own virtualenv, fed sufficient statistics:",
        "`python -m venv /tmp/gbvenv && /tmp/gbvenv/bin/pip install gbstats`.",
        "",
    ])  # fmt: skip
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
