"""Unit and property tests of analyze(): agreement with scipy, CUPED, sequential, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import analyze

# Cent-valued metrics keep float rounding far below the tolerances of the property tests.
cents = st.integers(-1_000_000, 1_000_000).map(lambda v: v / 100)
arms = st.lists(cents, min_size=2, max_size=40)


def _spread(values: list[float]) -> bool:
    return max(values) - min(values) > 0.5


def test_fixed_matches_welch_t_test() -> None:
    rng = np.random.default_rng(1)
    control, treatment = rng.exponential(2.0, 300), rng.exponential(2.2, 250)
    result = analyze(control=control, treatment=treatment)
    reference = stats.ttest_ind(treatment, control, equal_var=False)
    interval = reference.confidence_interval(0.95)
    assert result.lift == pytest.approx(treatment.mean() - control.mean())
    assert result.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert (result.low, result.high) == pytest.approx((interval.low, interval.high), rel=1e-9)
    assert result.relative_lift == pytest.approx(result.lift / control.mean())
    assert result.significant == (result.p_value < 0.05)
    assert (result.n_control, result.n_treatment, result.method) == (300, 250, "fixed")


def test_cuped_matches_regression_adjustment() -> None:
    rng = np.random.default_rng(2)
    pre_c, pre_t = rng.normal(5, 2, 400), rng.normal(5, 2, 400)
    post_c = 0.8 * pre_c + rng.normal(0, 1, 400)
    post_t = 0.8 * pre_t + rng.normal(0, 1, 400) + 0.3
    result = analyze(control=post_c, treatment=post_t, pre_control=pre_c, pre_treatment=pre_t)
    x = np.concatenate([pre_c, pre_t])
    y = np.concatenate([post_c, post_t])
    theta = np.cov(x, y)[0, 1] / np.var(x, ddof=1)
    expected = (post_t - theta * pre_t).mean() - (post_c - theta * pre_c).mean()
    assert result.theta == pytest.approx(theta)
    assert result.lift == pytest.approx(expected)
    plain = analyze(control=post_c, treatment=post_t)
    assert result.se < plain.se
    assert result.variance_reduction == pytest.approx(1 - result.se**2 / plain.se**2)
    assert result.relative_lift == pytest.approx(result.lift / post_c.mean())


def test_sequential_is_wider_and_p_value_agrees_with_interval() -> None:
    rng = np.random.default_rng(3)
    control, treatment = rng.normal(0, 1, 2000), rng.normal(0.12, 1, 2000)
    fixed = analyze(control=control, treatment=treatment)
    seq = analyze(control=control, treatment=treatment, method="sequential")
    assert seq.lift == fixed.lift
    assert seq.low < fixed.low and seq.high > fixed.high
    assert seq.p_value > fixed.p_value
    assert seq.significant == (seq.low > 0 or seq.high < 0)


def test_to_dict_round_trips_fields() -> None:
    result = analyze(control=[1.0, 2.0, 3.0], treatment=[2.0, 3.0, 5.0])
    data = result.to_dict()
    assert data["lift"] == result.lift and data["method"] == "fixed"
    assert data["variance_reduction"] is None


def test_constant_arms() -> None:
    same = analyze(control=[2.0, 2.0], treatment=[2.0, 2.0])
    assert (same.lift, same.p_value, same.significant) == (0.0, 1.0, False)
    different = analyze(control=[2.0, 2.0], treatment=[3.0, 3.0])
    assert different.p_value == 0.0 and different.low == different.high == 1.0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"control": [], "treatment": [1.0, 2.0]}, "control"),
        ({"control": [1.0, 2.0], "treatment": [1.0]}, "treatment"),
        ({"control": [1.0, math.nan], "treatment": [1.0, 2.0]}, "control"),
        ({"control": [1.0, 2.0], "treatment": [1.0, math.inf]}, "treatment"),
        ({"control": [[1.0, 2.0]], "treatment": [1.0, 2.0]}, "control"),
        ({"control": ["a", "b"], "treatment": [1.0, 2.0]}, "control"),
        ({"control": [1.0, 2.0], "treatment": [1.0, 2.0], "alpha": 0.0}, "alpha"),
        ({"control": [1.0, 2.0], "treatment": [1.0, 2.0], "alpha": 1.5}, "alpha"),
        ({"control": [1.0, 2.0], "treatment": [1.0, 2.0], "method": "bayes"}, "method"),
        ({"control": [1, 2], "treatment": [1, 2], "pre_control": [1, 2]}, "pre_treatment"),
        (
            {
                "control": [1, 2],
                "treatment": [1, 2],
                "pre_control": [1, 2, 3],
                "pre_treatment": [1, 2],
            },
            "pre_control",
        ),
        (
            {
                "control": [1, 2],
                "treatment": [1, 2],
                "pre_control": [1, 2],
                "pre_treatment": [1, 2, 3],
            },
            "pre_treatment",
        ),
    ],
)
def test_bad_input_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        analyze(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


@settings(max_examples=150, deadline=None)
@given(control=arms, treatment=arms, shift=cents, method=st.sampled_from(["fixed", "sequential"]))
def test_translation_equivariance(
    control: list[float], treatment: list[float], shift: float, method: str
) -> None:
    assume(_spread(control) and _spread(treatment))
    base = analyze(control=control, treatment=treatment, method=method)  # type: ignore[arg-type]
    moved = analyze(
        control=np.add(control, shift),
        treatment=np.add(treatment, shift),
        method=method,  # type: ignore[arg-type]
    )
    assert moved.lift == pytest.approx(base.lift, abs=1e-6)
    assert moved.p_value == pytest.approx(base.p_value, abs=1e-6)
    assert moved.high - moved.low == pytest.approx(base.high - base.low, rel=1e-6)


@settings(max_examples=150, deadline=None)
@given(control=arms, treatment=arms, method=st.sampled_from(["fixed", "sequential"]))
def test_swapping_arms_negates_lift(
    control: list[float], treatment: list[float], method: str
) -> None:
    assume(_spread(control) and _spread(treatment))
    ab = analyze(control=control, treatment=treatment, method=method)  # type: ignore[arg-type]
    ba = analyze(control=treatment, treatment=control, method=method)  # type: ignore[arg-type]
    assert ba.lift == pytest.approx(-ab.lift, abs=1e-9)
    assert (ba.low, ba.high) == pytest.approx((-ab.high, -ab.low), abs=1e-9)
    assert ba.p_value == pytest.approx(ab.p_value, abs=1e-12)
    assert 0.0 <= ab.p_value <= 1.0


@settings(max_examples=100, deadline=None)
@given(
    control=arms,
    treatment=arms,
    scale=st.floats(0.01, 100.0),
)
def test_scale_equivariance(control: list[float], treatment: list[float], scale: float) -> None:
    assume(_spread(control) and _spread(treatment))
    base = analyze(control=control, treatment=treatment)
    scaled = analyze(control=np.multiply(control, scale), treatment=np.multiply(treatment, scale))
    assert scaled.lift == pytest.approx(base.lift * scale, rel=1e-9, abs=1e-9)
    assert scaled.p_value == pytest.approx(base.p_value, abs=1e-9)
