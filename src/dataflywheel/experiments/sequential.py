"""Always-valid inference: the asymptotic confidence sequence of Howard et al. / Waudby-Smith et al.

A fixed-horizon interval is valid only if you look once. This normal-mixture confidence sequence
holds simultaneously for every sample size, so an experiment can be checked daily and stopped as
soon as the interval excludes zero while keeping the false-positive rate at most ``alpha``.
"""

from __future__ import annotations

import math

DEFAULT_TUNING = 5000.0
"""Total sample size at which the sequence is tightest (GrowthBook's default)."""


def mixture_rho(alpha: float, tuning: float = DEFAULT_TUNING) -> float:
    """The mixture spread that minimises the interval width when ``tuning`` units have been seen."""
    log_term = -2.0 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1.0)) / tuning)


def confidence_sequence(
    estimate: float, se: float, n: int, alpha: float, tuning: float = DEFAULT_TUNING
) -> tuple[float, float, float]:
    """(low, high, always-valid p-value) for a normal ``estimate`` after ``n`` units in total.

    ``se`` is the standard error of the estimate, so ``se**2 * n`` is the per-unit variance the
    sequence is stated in; ``p <= alpha`` exactly when the interval excludes zero.
    """
    if se <= 0.0:
        return estimate, estimate, 1.0 if estimate == 0.0 else 0.0
    scaled = n * mixture_rho(alpha, tuning) ** 2  # n * rho^2
    half_width = se * math.sqrt(
        2.0 * (scaled + 1.0) / scaled * math.log(math.sqrt(scaled + 1.0) / alpha)
    )
    z2 = (estimate / se) ** 2
    log_evalue = scaled * z2 / (2.0 * (scaled + 1.0)) - 0.5 * math.log(scaled + 1.0)
    p_value = math.exp(-log_evalue) if log_evalue > 0 else 1.0
    return estimate - half_width, estimate + half_width, p_value
