"""Per-round terms of the off-policy estimators, and SLOPE selection among biased variants.

Every estimator here has the form ``mean(base) + sum(num) / sum(den)`` over logged rounds, so
one bootstrap of row indices yields all of them at once (see ``ope.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Terms", "slope_select", "terms_for"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Terms:
    """An estimator as per-round terms: value = mean(base) + sum(num) / sum(den)."""

    base: FloatArray | None = None
    num: FloatArray | None = None
    den: FloatArray | None = None
    hyperparameter: float | None = None

    def value(self) -> float:
        """The estimate on the full sample."""
        total = float(self.base.mean()) if self.base is not None else 0.0
        if self.num is not None and self.den is not None:
            den = float(self.den.sum())
            total += float(self.num.sum()) / den if den > 0 else 0.0
        return total

    def standard_error(self) -> float:
        """Delta-method standard error (linearised ratio), used to tune hyperparameters."""
        n = next(a for a in (self.base, self.num) if a is not None).shape[0]
        influence = np.zeros(n) if self.base is None else self.base - self.base.mean()
        if self.num is not None and self.den is not None:
            den_mean = float(self.den.mean())
            if den_mean > 0:
                ratio = float(self.num.sum()) / float(self.den.sum())
                influence = influence + (self.num - ratio * self.den) / den_mean
        return float(influence.std() / np.sqrt(n)) if n > 1 else 0.0


def slope_select(values: Sequence[float], ses: Sequence[float], width: float = 2.0) -> int:
    """SLOPE (Su, Srinath & Krishnamurthy 2020): index of the last candidate whose interval meets
    the intersection of every earlier one.

    Candidates must be ordered from least to most biased (variance typically decreasing), so the
    rule keeps trading bias for variance until a candidate's interval ``value ± width·se`` stops
    agreeing with all the less-biased ones.
    """
    low, high = -np.inf, np.inf
    chosen = 0
    for i, (v, se) in enumerate(zip(values, ses, strict=True)):
        low, high = max(low, v - width * se), min(high, v + width * se)
        if low > high:
            break
        chosen = i
    return chosen


def terms_for(
    name: str,
    reward: FloatArray,
    weight: FloatArray,
    pi_factual: FloatArray,
    q_factual: FloatArray | None,
    q_policy: FloatArray | None,
) -> Terms:
    """Per-round terms of estimator ``name``; ``weight`` = pi_e(a_i | x_i, p_i) / pscore_i.

    ``q_policy`` is the reward model averaged over the evaluation policy at the logged position,
    ``q_factual`` its prediction at the logged action. Switch-DR and DRos tune their
    hyperparameter by SLOPE, starting from plain DR (no bias) toward DM (most shrinkage).
    """
    if name == "ipw":
        return Terms(base=weight * reward)
    if name == "snipw":
        return Terms(num=weight * reward, den=weight)
    if name == "replay":
        return Terms(num=pi_factual * reward, den=pi_factual)
    if q_factual is None or q_policy is None:
        raise ValueError(f"{name} needs a reward model")
    residual = reward - q_factual
    if name == "dm":
        return Terms(base=q_policy)
    if name == "dr":
        return Terms(base=q_policy + weight * residual)
    if name == "sndr":
        return Terms(base=q_policy, num=weight * residual, den=weight)
    if name == "switch-dr":
        taus = _switch_grid(weight)
        candidates = [
            Terms(
                base=q_policy + np.where(weight <= tau, weight, 0.0) * residual, hyperparameter=tau
            )
            for tau in taus
        ]
    elif name == "dros":
        lambdas = _shrinkage_grid(weight)
        candidates = [
            Terms(base=q_policy + _shrink(weight, lam) * residual, hyperparameter=lam)
            for lam in lambdas
        ]
    else:
        raise ValueError(f"unknown estimator {name}")
    best = slope_select([c.value() for c in candidates], [c.standard_error() for c in candidates])
    return candidates[best]


def _shrink(weight: FloatArray, lam: float) -> FloatArray:
    """DRos's optimistic shrinkage of the importance weight: λw / (w² + λ) (λ = ∞ gives w)."""
    if np.isinf(lam):
        return weight
    return lam * weight / (weight**2 + lam) if lam > 0 else np.zeros_like(weight)


def _switch_grid(weight: FloatArray) -> list[float]:
    """Switch thresholds from ∞ (plain DR) down through the weight quantiles to 0 (DM)."""
    quantiles = np.quantile(weight, [0.999, 0.99, 0.95, 0.9, 0.8, 0.7, 0.5, 0.3])
    return [np.inf, *sorted({float(t) for t in quantiles if t > 0}, reverse=True), 0.0]


def _shrinkage_grid(weight: FloatArray) -> list[float]:
    """DRos λ from ∞ (plain DR) down a geometric grid scaled to the weights, to 0 (DM)."""
    scale = float(np.mean(weight**2)) or 1.0
    return [np.inf, *(scale * np.geomspace(1e3, 1e-3, 13)).tolist(), 0.0]
