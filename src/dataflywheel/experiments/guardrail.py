"""Guardrails: a non-inferiority test that the treatment is not worse than control by a margin.

A launch should not need to prove a guardrail metric (latency, error rate, revenue) improved, only
that it did not degrade by more than a tolerated margin; that is a one-sided test of
``H0: lift <= -margin`` (or ``>= +margin`` when lower values are better).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from numpy.typing import ArrayLike
from scipy import special

from dataflywheel.experiments import _validate
from dataflywheel.experiments.analysis import estimate_lift


@dataclass(frozen=True)
class GuardrailResult:
    """Whether the treatment passed the non-inferiority check, with the evidence."""

    passed: bool
    lift: float
    margin: float
    bound: float
    p_value: float
    higher_is_better: bool
    alpha: float
    n_control: int
    n_treatment: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return asdict(self)


def non_inferiority(
    control: ArrayLike,
    treatment: ArrayLike,
    margin: float,
    *,
    higher_is_better: bool = True,
    relative: bool = False,
    alpha: float = 0.05,
    pre_control: ArrayLike | None = None,
    pre_treatment: ArrayLike | None = None,
) -> GuardrailResult:
    """One-sided test that the treatment is not worse than control by more than ``margin``.

    ``margin`` is in metric units, or a fraction of the control mean when ``relative``. ``bound``
    is the one-sided ``1 - alpha`` confidence bound of the lift on the harmful side; the check
    passes when that bound stays within the margin. Pre-period arrays enable CUPED.
    """
    margin = _validate.positive(margin, "margin")
    alpha = _validate.probability(alpha, "alpha")
    est = estimate_lift(control, treatment, pre_control, pre_treatment)
    absolute_margin = margin * abs(est.control_mean) if relative else margin
    sign = 1.0 if higher_is_better else -1.0
    critical = float(special.stdtrit(est.df, 1.0 - alpha))
    bound = est.lift - sign * critical * est.se
    distance = sign * est.lift + absolute_margin  # > 0 when the estimate is inside the margin
    if est.se > 0:
        p_value = float(special.stdtr(est.df, -distance / est.se))
    else:
        p_value = 0.0 if distance > 0 else 1.0
    return GuardrailResult(
        passed=p_value < alpha,
        lift=est.lift,
        margin=absolute_margin,
        bound=bound,
        p_value=p_value,
        higher_is_better=higher_is_better,
        alpha=alpha,
        n_control=est.n_control,
        n_treatment=est.n_treatment,
    )
