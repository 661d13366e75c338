"""Ratio metrics, guardrails, power and sequential helpers: exact values and validation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import (
    confidence_sequence,
    interleaving_sample_size,
    non_inferiority,
    power,
    ratio_metric,
    sample_size,
)


def test_ratio_metric_point_estimate_and_delta_variance() -> None:
    rng = np.random.default_rng(40)
    d_c, d_t = rng.poisson(10, 400) + 1.0, rng.poisson(10, 400) + 1.0
    m_c, m_t = rng.binomial(d_c.astype(int), 0.1), rng.binomial(d_t.astype(int), 0.12)
    result = ratio_metric(m_c, d_c, m_t, d_t)
    assert result.control_mean == pytest.approx(m_c.sum() / d_c.sum())
    assert result.lift == pytest.approx(m_t.sum() / d_t.sum() - m_c.sum() / d_c.sum())
    # The delta-method variance is the variance of the linearised per-unit ratio.
    linear = (m_c - result.control_mean * d_c) / d_c.mean()
    var_c = linear.var(ddof=1) / linear.size
    linear_t = (m_t - result.treatment_mean * d_t) / d_t.mean()
    assert result.se**2 == pytest.approx(var_c + linear_t.var(ddof=1) / linear_t.size)
    seq = ratio_metric(m_c, d_c, m_t, d_t, method="sequential")
    assert seq.high - seq.low > result.high - result.low


def test_ratio_metric_rejects_bad_input() -> None:
    with pytest.raises(ValidationError) as info:
        ratio_metric([1, 2], [1, 2, 3], [1, 2], [1, 2])
    assert info.value.field == "denominator_control"
    with pytest.raises(ValidationError) as info:
        ratio_metric([1, 2], [1, 2], [1, 2], [0, 0])
    assert info.value.field == "denominator_treatment"


def test_guardrail_directions() -> None:
    rng = np.random.default_rng(41)
    control = rng.normal(100, 10, 2000)
    slower = rng.normal(103, 10, 2000)  # latency up by 3%
    latency = non_inferiority(control, slower, 0.01, higher_is_better=False, relative=True)
    assert not latency.passed and latency.bound > latency.margin
    tolerated = non_inferiority(control, slower, 0.05, higher_is_better=False, relative=True)
    assert tolerated.passed and tolerated.margin == pytest.approx(0.05 * control.mean())
    revenue = non_inferiority(control, slower, 1.0)
    assert revenue.passed and revenue.bound > -1.0
    with pytest.raises(ValidationError) as info:
        non_inferiority(control, slower, 0.0)
    assert info.value.field == "margin"


def test_sample_size_textbook_values() -> None:
    # sigma = 1, delta = 0.2, alpha 5%, power 80%: 2 * (1.96 + 0.8416)^2 / 0.04 = 392.4
    assert sample_size(0.0, 1.0, 0.2) == 393
    assert sample_size(10.0, 1.0, 0.02, relative=True) == 393
    # Conversion 10% -> 12%: Fleiss' formula without continuity correction gives 3841.
    assert sample_size(0.10, None, 0.02) == 3841
    assert power(393, 0.0, 1.0, 0.2) == pytest.approx(0.8, abs=0.002)
    assert power(100, 0.0, 1.0, 0.2) < power(1000, 0.0, 1.0, 0.2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"baseline_mean": 0.1, "baseline_sd": None, "mde": 0.0}, "mde"),
        ({"baseline_mean": 1.5, "baseline_sd": None, "mde": 0.1}, "baseline_mean"),
        ({"baseline_mean": 0.95, "baseline_sd": None, "mde": 0.1}, "mde"),
        ({"baseline_mean": 1.0, "baseline_sd": -1.0, "mde": 0.1}, "baseline_sd"),
        ({"baseline_mean": 1.0, "baseline_sd": 1.0, "mde": 0.1, "power": 1.0}, "power"),
        ({"baseline_mean": math.nan, "baseline_sd": 1.0, "mde": 0.1}, "baseline_mean"),
    ],
)
def test_sample_size_validation(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        sample_size(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_confidence_sequence_shrinks_and_p_matches_interval() -> None:
    widths = []
    for n in (100, 1_000, 10_000, 100_000):
        se = 1.0 / math.sqrt(n)
        low, high, p_value = confidence_sequence(0.0, se, n, 0.05)
        widths.append(high - low)
        assert p_value == 1.0
        # Exactly at the boundary the always-valid p-value equals alpha.
        _, _, p_edge = confidence_sequence(high, se, n, 0.05)
        assert p_edge == pytest.approx(0.05)
    assert widths == sorted(widths, reverse=True)


def test_interleaving_sample_size() -> None:
    base = interleaving_sample_size(0.6, 0.0)
    assert interleaving_sample_size(0.6, 0.5) == pytest.approx(2 * base, abs=1)
    assert interleaving_sample_size(0.55, 0.0) > base
    with pytest.raises(ValidationError):
        interleaving_sample_size(0.5, 0.0)
