"""Sample ratio mismatch detection."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import srm


def test_fires_on_a_50_6_split_of_100k_users() -> None:
    result = srm([50_600, 49_400], [0.5, 0.5])
    assert result.statistic == pytest.approx(14.4)
    assert result.p_value < 0.001 and result.mismatch
    assert result.observed_shares == pytest.approx((0.506, 0.494))


def test_matches_scipy_chisquare_and_accepts_percentages() -> None:
    counts = [3_300, 3_350, 3_500]
    result = srm(counts, [25, 25, 50])
    reference = stats.chisquare(counts, np.sum(counts) * np.array([0.25, 0.25, 0.5]))
    assert result.p_value == pytest.approx(reference.pvalue)
    assert result.df == 2 and result.mismatch


def test_fair_splits_rarely_alarm() -> None:
    """At most 0.1% false alarms (up to binomial noise) and uniform p-values under a fair split."""
    rng = np.random.default_rng(20)
    sims = 10_000
    two = rng.binomial(100_000, 0.5, sims)
    three = rng.multinomial(60_000, [0.2, 0.3, 0.5], sims)
    p_two = np.array([srm([a, 100_000 - a], [0.5, 0.5]).p_value for a in two])
    p_three = np.array([srm(row, [0.2, 0.3, 0.5]).p_value for row in three])
    ceiling = stats.binom.ppf(0.999, sims, 0.001)
    for p_values in (p_two, p_three):
        assert np.sum(p_values < 0.001) <= ceiling
        assert stats.kstest(p_values, "uniform").pvalue > 0.001


def test_units_in_a_zero_share_arm_are_a_mismatch() -> None:
    assert srm([10, 10, 1], [0.5, 0.5, 0.0]).mismatch
    assert not srm([10, 10, 0], [0.5, 0.5, 0.0]).mismatch


@pytest.mark.parametrize(
    ("counts", "shares", "field"),
    [
        ([10], [1.0], "observed_counts"),
        ([10, -1], [0.5, 0.5], "observed_counts"),
        ([10, 1.5], [0.5, 0.5], "observed_counts"),
        ([0, 0], [0.5, 0.5], "observed_counts"),
        ([10, 10], [0.5, 0.4], "expected_shares"),
        ([10, 10], [0.5, 0.25, 0.25], "expected_shares"),
        ([10, 10], [1.5, -0.5], "expected_shares"),
    ],
)
def test_bad_input(counts: list[float], shares: list[float], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        srm(counts, shares)
    assert info.value.field == field


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(0, 10**7), min_size=2, max_size=6).filter(lambda c: sum(c) > 0),
    data=st.data(),
)
def test_p_value_is_a_probability(counts: list[int], data: st.DataObject) -> None:
    raw = data.draw(st.lists(st.integers(1, 1000), min_size=len(counts), max_size=len(counts)))
    shares = np.array(raw) / sum(raw)
    result = srm(counts, list(shares))
    assert 0.0 <= result.p_value <= 1.0
    assert result.mismatch == (result.p_value < 0.001)
