"""Two-arm analysis of per-unit metrics: Welch t-test, CUPED, or an always-valid sequence."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from numpy.typing import ArrayLike
from scipy import special

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate
from dataflywheel.experiments.cuped import ArmMoments, adjusted_moments, moments, pooled_theta
from dataflywheel.experiments.sequential import DEFAULT_TUNING, confidence_sequence

Method = Literal["fixed", "sequential"]
METHODS: tuple[str, ...] = ("fixed", "sequential")


@dataclass(frozen=True)
class AnalysisResult:
    """The lift of treatment over control with its interval and test.

    ``lift`` is the absolute difference of means (treatment - control); ``low``/``high`` bound it
    at level ``1 - alpha``; ``relative_lift`` is ``lift`` over the control mean (``None`` when that
    mean is zero). ``variance_reduction`` is the share of the lift's variance CUPED removed.
    """

    lift: float
    relative_lift: float | None
    low: float
    high: float
    p_value: float
    significant: bool
    se: float
    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    method: str
    alpha: float
    variance_reduction: float | None = None
    theta: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return asdict(self)


def analyze(
    control: ArrayLike,
    treatment: ArrayLike,
    pre_control: ArrayLike | None = None,
    pre_treatment: ArrayLike | None = None,
    method: Method = "fixed",
    alpha: float = 0.05,
    *,
    sequential_tuning: float = DEFAULT_TUNING,
) -> AnalysisResult:
    """Compare per-unit metric arrays of two arms.

    With ``pre_control``/``pre_treatment`` (each unit's pre-experiment value of the metric or a
    correlated covariate) the lift is CUPED-adjusted. ``method="sequential"`` returns an
    always-valid interval and p-value, safe to check after every new batch of data;
    ``sequential_tuning`` is the total sample size where that interval is tightest.
    """
    alpha = _validate.probability(alpha, "alpha")
    check_method(method)
    _validate.positive(sequential_tuning, "sequential_tuning")
    est = estimate_lift(control, treatment, pre_control, pre_treatment)
    low, high, p_value = infer(
        est.lift, est.se, est.df, est.n_control + est.n_treatment, method, alpha, sequential_tuning
    )
    return AnalysisResult(
        lift=est.lift,
        relative_lift=est.lift / est.control_mean if est.control_mean != 0 else None,
        low=low,
        high=high,
        p_value=p_value,
        significant=p_value < alpha,
        se=est.se,
        control_mean=est.control_mean,
        treatment_mean=est.treatment_mean,
        n_control=est.n_control,
        n_treatment=est.n_treatment,
        method=method,
        alpha=alpha,
        variance_reduction=est.variance_reduction,
        theta=est.theta,
    )


@dataclass(frozen=True)
class LiftEstimate:
    """Point estimate, standard error and Welch degrees of freedom of a (CUPED) lift."""

    lift: float
    se: float
    df: float
    control_mean: float
    treatment_mean: float
    n_control: int
    n_treatment: int
    variance_reduction: float | None
    theta: float | None


def estimate_lift(
    control: ArrayLike,
    treatment: ArrayLike,
    pre_control: ArrayLike | None = None,
    pre_treatment: ArrayLike | None = None,
) -> LiftEstimate:
    """Validate the arrays and estimate the lift, CUPED-adjusted when pre-period data is given."""
    y_c = _validate.sample(control, "control")
    y_t = _validate.sample(treatment, "treatment")
    raw_c, raw_t = moments(y_c), moments(y_t)
    if (pre_control is None) != (pre_treatment is None):
        field = "pre_treatment" if pre_treatment is None else "pre_control"
        raise ValidationError("pre_control and pre_treatment must be given together", field=field)
    theta: float | None = None
    reduction: float | None = None
    arm_c, arm_t = raw_c, raw_t
    if pre_control is not None and pre_treatment is not None:
        x_c = _validate.sample(pre_control, "pre_control")
        x_t = _validate.sample(pre_treatment, "pre_treatment")
        _validate.same_length(y_c, x_c, "pre_control", "control")
        _validate.same_length(y_t, x_t, "pre_treatment", "treatment")
        theta = pooled_theta(y_c, y_t, x_c, x_t)
        arm_c, arm_t = adjusted_moments(y_c, x_c, theta), adjusted_moments(y_t, x_t, theta)
        raw_var = _lift_variance(raw_c, raw_t)
        reduction = 1.0 - _lift_variance(arm_c, arm_t) / raw_var if raw_var > 0 else 0.0
    return LiftEstimate(
        lift=arm_t.mean - arm_c.mean,
        se=math.sqrt(_lift_variance(arm_c, arm_t)),
        df=welch_df(arm_c, arm_t),
        control_mean=raw_c.mean,
        treatment_mean=raw_t.mean,
        n_control=raw_c.n,
        n_treatment=raw_t.n,
        variance_reduction=reduction,
        theta=theta,
    )


def check_method(method: str) -> None:
    """Reject anything but the two supported inference methods."""
    if method not in METHODS:
        raise ValidationError(f"method must be one of {METHODS}, got {method!r}", field="method")


def infer(
    estimate: float,
    se: float,
    df: float,
    n: int,
    method: str,
    alpha: float,
    tuning: float = DEFAULT_TUNING,
) -> tuple[float, float, float]:
    """(low, high, two-sided p-value) for ``estimate`` with standard error ``se``.

    Fixed: Student t with ``df`` degrees of freedom (``inf`` = normal). Sequential: the
    confidence sequence after ``n`` units in total.
    """
    if method == "sequential":
        return confidence_sequence(estimate, se, n, alpha, tuning)
    if se <= 0.0:
        return estimate, estimate, 1.0 if estimate == 0.0 else 0.0
    if math.isinf(df):
        critical = float(special.ndtri(1.0 - alpha / 2.0))
        p_value = 2.0 * float(special.ndtr(-abs(estimate) / se))
    else:
        critical = float(special.stdtrit(df, 1.0 - alpha / 2.0))
        p_value = 2.0 * float(special.stdtr(df, -abs(estimate) / se))
    return estimate - critical * se, estimate + critical * se, min(p_value, 1.0)


def welch_df(a: ArmMoments, b: ArmMoments) -> float:
    """Welch-Satterthwaite degrees of freedom for a difference of two means."""
    va, vb = a.variance / a.n, b.variance / b.n
    denominator = va**2 / (a.n - 1) + vb**2 / (b.n - 1)
    if denominator == 0.0:
        return float(a.n + b.n - 2)
    return (va + vb) ** 2 / denominator


def _lift_variance(a: ArmMoments, b: ArmMoments) -> float:
    return a.variance / a.n + b.variance / b.n
