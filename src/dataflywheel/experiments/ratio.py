"""Ratio metrics (clicks per impression, revenue per session) compared by the delta method.

When the unit of randomisation is the user but the metric is a ratio of sums over users, the
per-user ratios are not independent draws of the metric; the first-order Taylor expansion of
``mean(M) / mean(D)`` gives its variance from the per-user numerator/denominator moments.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate
from dataflywheel.experiments.analysis import AnalysisResult, Method, check_method, infer
from dataflywheel.experiments.sequential import DEFAULT_TUNING


def ratio_metric(
    numerator_control: ArrayLike,
    denominator_control: ArrayLike,
    numerator_treatment: ArrayLike,
    denominator_treatment: ArrayLike,
    method: Method = "fixed",
    alpha: float = 0.05,
    *,
    sequential_tuning: float = DEFAULT_TUNING,
) -> AnalysisResult:
    """Difference of ``sum(numerator) / sum(denominator)`` between arms, one entry per unit.

    The fields mean what they mean for :func:`analyze`, with the ratio in place of the mean.
    """
    m_c = _validate.sample(numerator_control, "numerator_control")
    d_c = _validate.sample(denominator_control, "denominator_control")
    m_t = _validate.sample(numerator_treatment, "numerator_treatment")
    d_t = _validate.sample(denominator_treatment, "denominator_treatment")
    _validate.same_length(m_c, d_c, "denominator_control", "numerator_control")
    _validate.same_length(m_t, d_t, "denominator_treatment", "numerator_treatment")
    alpha = _validate.probability(alpha, "alpha")
    check_method(method)
    _validate.positive(sequential_tuning, "sequential_tuning")
    ratio_c, var_c = delta_ratio(m_c, d_c, "denominator_control")
    ratio_t, var_t = delta_ratio(m_t, d_t, "denominator_treatment")
    lift = ratio_t - ratio_c
    se = math.sqrt(var_c + var_t)
    n_c, n_t = int(m_c.size), int(m_t.size)
    low, high, p_value = infer(lift, se, math.inf, n_c + n_t, method, alpha, sequential_tuning)
    return AnalysisResult(
        lift=lift,
        relative_lift=lift / ratio_c if ratio_c != 0 else None,
        low=low,
        high=high,
        p_value=p_value,
        significant=p_value < alpha,
        se=se,
        control_mean=ratio_c,
        treatment_mean=ratio_t,
        n_control=n_c,
        n_treatment=n_t,
        method=method,
        alpha=alpha,
    )


def delta_ratio(
    numerator: NDArray[np.float64], denominator: NDArray[np.float64], field: str
) -> tuple[float, float]:
    """The ratio of means and the delta-method variance of that ratio."""
    n = numerator.size
    mean_m, mean_d = float(numerator.mean()), float(denominator.mean())
    if mean_d == 0.0:
        raise ValidationError(f"{field} sums to zero; the ratio is undefined", field=field)
    ratio = mean_m / mean_d
    # Delta method: Var(R) ~ Var(M - R*D) / (n * mean(D)^2), the linearised per-unit ratio.
    linear = (numerator - mean_m) - ratio * (denominator - mean_d)
    variance = float(np.sum(linear * linear)) / ((n - 1) * mean_d**2 * n)
    return ratio, max(variance, 0.0)
