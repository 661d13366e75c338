"""Power and sample size of a two-arm, two-sided test on a mean or a conversion rate.

Normal approximation: ``n = (z_{1-alpha/2} + z_{power})^2 * 2 sigma^2 / mde^2`` per arm. For a
rate the variance differs under the null (pooled rate) and the alternative (each arm's own rate),
so the two z terms carry different standard deviations (Fleiss, Statistical Methods for Rates).
"""

from __future__ import annotations

import math

from scipy import special

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate


def sample_size(
    baseline_mean: float,
    baseline_sd: float | None,
    mde: float,
    alpha: float = 0.05,
    power: float = 0.8,
    *,
    relative: bool = False,
) -> int:
    """Units needed per arm to detect a lift of ``mde`` with probability ``power``.

    ``baseline_sd=None`` reads ``baseline_mean`` as a conversion rate in (0, 1). ``mde`` is in
    metric units, or a fraction of ``baseline_mean`` when ``relative``.
    """
    power = _validate.probability(power, "power")
    null_sd, alt_sd, delta = _design(baseline_mean, baseline_sd, mde, relative)
    alpha = _validate.probability(alpha, "alpha")
    z_alpha = float(special.ndtri(1.0 - alpha / 2.0))
    z_power = float(special.ndtri(power))
    return math.ceil(((z_alpha * null_sd + z_power * alt_sd) / delta) ** 2)


def power(
    n_per_arm: int,
    baseline_mean: float,
    baseline_sd: float | None,
    mde: float,
    alpha: float = 0.05,
    *,
    relative: bool = False,
) -> float:
    """Probability that a two-sided test at ``alpha`` detects a true lift of ``mde``."""
    if not isinstance(n_per_arm, int) or n_per_arm < 2:
        raise ValidationError("n_per_arm must be an integer of at least 2", field="n_per_arm")
    null_sd, alt_sd, delta = _design(baseline_mean, baseline_sd, mde, relative)
    alpha = _validate.probability(alpha, "alpha")
    z_alpha = float(special.ndtri(1.0 - alpha / 2.0))
    z = (delta * math.sqrt(n_per_arm) - z_alpha * null_sd) / alt_sd
    return float(special.ndtr(z))


def _design(
    baseline_mean: float, baseline_sd: float | None, mde: float, relative: bool
) -> tuple[float, float, float]:
    """(sd of the difference per unit under H0, under H1, absolute effect) for one design."""
    if not isinstance(baseline_mean, int | float) or not math.isfinite(baseline_mean):
        raise ValidationError("baseline_mean must be a finite number", field="baseline_mean")
    if not isinstance(mde, int | float) or not math.isfinite(mde) or mde == 0:
        raise ValidationError(f"mde must be a non-zero number, got {mde!r}", field="mde")
    delta = abs(float(mde))
    if relative:
        delta *= abs(baseline_mean)
    if baseline_sd is not None:
        sd = _validate.positive(baseline_sd, "baseline_sd")
        return math.sqrt(2.0) * sd, math.sqrt(2.0) * sd, delta
    p1 = _validate.probability(baseline_mean, "baseline_mean")
    p2 = p1 + math.copysign(delta, mde)
    if not 0.0 < p2 < 1.0:
        raise ValidationError(
            f"baseline rate {p1:g} plus mde gives {p2:g}, outside (0, 1)", field="mde"
        )
    p_bar = (p1 + p2) / 2.0
    null_sd = math.sqrt(2.0 * p_bar * (1.0 - p_bar))
    alt_sd = math.sqrt(p1 * (1.0 - p1) + p2 * (1.0 - p2))
    return null_sd, alt_sd, delta
