"""CUPED: variance reduction with a pre-experiment covariate (Deng, Xu, Kohavi & Walker, 2013).

Each unit's metric ``y`` is replaced by ``y - theta * x`` where ``x`` is the same unit's
pre-period value. Randomisation makes ``x`` independent of the arm, so the lift stays unbiased
while its variance shrinks by a factor ``1 - rho^2`` (``rho`` = correlation of ``y`` and ``x``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class ArmMoments:
    """The mean and variance of one arm's (possibly adjusted) metric, with its size."""

    mean: float
    variance: float
    n: int


def moments(values: NDArray[np.float64]) -> ArmMoments:
    """Sample mean and unbiased variance; exactly zero variance for a constant arm."""
    variance = 0.0 if np.ptp(values) == 0 else float(np.var(values, ddof=1))
    return ArmMoments(float(np.mean(values)), variance, int(values.size))


def pooled_theta(
    y_control: NDArray[np.float64],
    y_treatment: NDArray[np.float64],
    x_control: NDArray[np.float64],
    x_treatment: NDArray[np.float64],
) -> float:
    """Regression slope of metric on covariate over both arms pooled (as GrowthBook computes it).

    One theta for both arms keeps the adjustment symmetric; zero when the covariate is constant.
    """
    y = np.concatenate([y_control, y_treatment])
    x = np.concatenate([x_control, x_treatment])
    x_dev = x - x.mean()
    # Element-wise sums rather than ``@``: BLAS threads cost more than they save at this size.
    sxx = float(np.sum(x_dev * x_dev))
    if sxx == 0.0:
        return 0.0
    return float(np.sum(x_dev * (y - y.mean()))) / sxx


def adjusted_moments(y: NDArray[np.float64], x: NDArray[np.float64], theta: float) -> ArmMoments:
    """Moments of ``y - theta * x`` for one arm."""
    return moments(y - theta * x)
