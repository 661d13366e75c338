"""Monte Carlo checks that the statistics keep their promises (fixed seeds, vectorised data).

Each bound is a binomial tolerance around the nominal rate, so a test that is too liberal or too
conservative fails while sampling noise at the fixed seed does not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataflywheel.experiments import analyze, non_inferiority, power, ratio_metric, sample_size

ALPHA = 0.05
SIMS = 1000


def _tolerance(rate: float, sims: int) -> float:
    return 3.0 * math.sqrt(rate * (1.0 - rate) / sims)


def _skewed(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Revenue-like metric: lognormal, mean exp(0.5) ~ 1.65."""
    return rng.lognormal(0.0, 1.0, shape)


def test_aa_false_positive_rate_fixed() -> None:
    rng = np.random.default_rng(10)
    control, treatment = _skewed(rng, (SIMS, 400)), _skewed(rng, (SIMS, 400))
    hits = sum(
        analyze(control=c, treatment=t).significant for c, t in zip(control, treatment, strict=True)
    )
    rate = hits / SIMS
    assert rate <= ALPHA + _tolerance(ALPHA, SIMS)
    assert rate >= ALPHA - _tolerance(ALPHA, SIMS)  # not uselessly conservative either


def _peeking_hits(method: str, rng: np.random.Generator, looks: int = 14, daily: int = 50) -> float:
    """Share of A/A experiments declared significant at any of ``looks`` daily looks."""
    control = _skewed(rng, (SIMS, looks * daily))
    treatment = _skewed(rng, (SIMS, looks * daily))
    hits = 0
    for c, t in zip(control, treatment, strict=True):
        hits += any(
            analyze(control=c[: day * daily], treatment=t[: day * daily], method=method).significant  # type: ignore[arg-type]
            for day in range(1, looks + 1)
        )
    return hits / SIMS


def test_aa_daily_peeking_sequential_keeps_alpha() -> None:
    rate = _peeking_hits("sequential", np.random.default_rng(11))
    assert rate <= ALPHA


def test_aa_daily_peeking_fixed_is_inflated() -> None:
    """Why the sequential method exists: 14 naive looks roughly triple the false positives."""
    rate = _peeking_hits("fixed", np.random.default_rng(11))
    assert rate > 2 * ALPHA


def test_sequential_still_detects_a_real_effect() -> None:
    rng = np.random.default_rng(12)
    control = rng.normal(0, 1, (200, 14 * 100))
    treatment = rng.normal(0.15, 1, (200, 14 * 100))
    found = sum(
        any(
            analyze(control=c[: d * 100], treatment=t[: d * 100], method="sequential").significant
            for d in range(1, 15)
        )
        for c, t in zip(control, treatment, strict=True)
    )
    assert found / 200 > 0.8


def test_fixed_interval_covers_true_lift_at_nominal_rate() -> None:
    rng = np.random.default_rng(13)
    true_lift = 0.4
    sims = 2000
    control = _skewed(rng, (sims, 300))
    treatment = _skewed(rng, (sims, 300)) + true_lift
    covered = 0
    for c, t in zip(control, treatment, strict=True):
        result = analyze(control=c, treatment=t)
        covered += result.low <= true_lift <= result.high
    assert covered / sims == pytest.approx(0.95, abs=0.02)


@pytest.mark.parametrize("rho", [0.5, 0.8])
def test_cuped_variance_reduction_matches_theory(rho: float) -> None:
    rng = np.random.default_rng(14)
    sims, n = 2000, 300
    pre = rng.normal(0, 1, (2, sims, n))
    post = rho * pre + math.sqrt(1 - rho**2) * rng.normal(0, 1, (2, sims, n))
    post[1] += 0.1
    plain: list[float] = []
    adjusted: list[float] = []
    reported: list[float] = []
    covered = 0
    for i in range(sims):
        raw = analyze(control=post[0, i], treatment=post[1, i])
        cuped = analyze(
            control=post[0, i], treatment=post[1, i], pre_control=pre[0, i], pre_treatment=pre[1, i]
        )
        assert cuped.variance_reduction is not None
        plain.append(raw.lift)
        adjusted.append(cuped.lift)
        reported.append(cuped.variance_reduction)
        covered += cuped.low <= 0.1 <= cuped.high
    empirical = 1.0 - np.var(adjusted) / np.var(plain)
    assert empirical == pytest.approx(rho**2, abs=0.04)
    assert np.mean(reported) == pytest.approx(rho**2, abs=0.01)
    assert np.mean(adjusted) == pytest.approx(0.1, abs=0.005)  # unbiased
    assert covered / sims == pytest.approx(0.95, abs=0.02)


def test_ratio_metric_delta_method_coverage() -> None:
    rng = np.random.default_rng(15)
    sims, n = 2000, 500
    impressions = rng.poisson(8.0, (2, sims, n)) + 1
    ctr = np.stack([rng.beta(2, 18, (sims, n)), rng.beta(2.4, 17.6, (sims, n))])
    clicks = rng.binomial(impressions, ctr)
    true_lift = 2.4 / 20 - 2 / 20  # impressions independent of ctr: ratio = E[ctr]
    covered = 0
    for i in range(sims):
        result = ratio_metric(clicks[0, i], impressions[0, i], clicks[1, i], impressions[1, i])
        covered += result.low <= true_lift <= result.high
    assert covered / sims == pytest.approx(0.95, abs=0.02)


def test_sample_size_gives_the_promised_power() -> None:
    rng = np.random.default_rng(16)
    n = sample_size(10.0, 3.0, 0.5, alpha=ALPHA, power=0.8)
    assert power(n, 10.0, 3.0, 0.5) == pytest.approx(0.8, abs=0.005)
    sims = 1500
    control, treatment = rng.normal(10, 3, (sims, n)), rng.normal(10.5, 3, (sims, n))
    found = sum(
        analyze(control=c, treatment=t).significant for c, t in zip(control, treatment, strict=True)
    )
    assert found / sims == pytest.approx(0.8, abs=_tolerance(0.8, sims))


def test_rate_sample_size_gives_the_promised_power() -> None:
    rng = np.random.default_rng(17)
    n = sample_size(0.10, None, 0.02, relative=False)
    sims = 1500
    control = rng.random((sims, n)) < 0.10
    treatment = rng.random((sims, n)) < 0.12
    found = sum(
        analyze(control=c.astype(float), treatment=t.astype(float)).significant
        for c, t in zip(control, treatment, strict=True)
    )
    assert found / sims == pytest.approx(0.8, abs=_tolerance(0.8, sims))


def test_guardrail_size_at_the_margin_and_power_inside_it() -> None:
    rng = np.random.default_rng(18)
    sims, n, margin = SIMS, 500, 0.2
    control = rng.normal(5, 1, (sims, n))
    at_margin = rng.normal(5 - margin, 1, (sims, n))
    unchanged = rng.normal(5, 1, (sims, n))
    passed_bad = sum(
        non_inferiority(c, t, margin).passed for c, t in zip(control, at_margin, strict=True)
    )
    passed_good = sum(
        non_inferiority(c, t, margin).passed for c, t in zip(control, unchanged, strict=True)
    )
    assert passed_bad / sims <= ALPHA + _tolerance(ALPHA, sims)
    assert passed_good / sims > 0.9
