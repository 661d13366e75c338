"""Per-round terms of the off-policy estimators, and SLOPE++ selection among biased variants.

Every estimator here has the form ``mean(base) + sum(num) / sum(den)`` over logged rounds, so
one bootstrap of row indices yields all of them at once (see ``ope.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Terms", "slope_select", "terms_for"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class Terms:
    """An estimator as per-round terms: value = mean(base) + sum(num) / sum(den).

    ``noise`` (centred, per round) is the first-order effect of refitting the reward model; it
    leaves the value alone but counts in the standard error and the bootstrap.
    """

    base: FloatArray | None = None
    num: FloatArray | None = None
    den: FloatArray | None = None
    hyperparameter: float | None = None
    noise: FloatArray | None = None

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
        if self.noise is not None:
            influence = influence + self.noise
        if self.num is not None and self.den is not None:
            den_mean = float(self.den.mean())
            if den_mean > 0:
                ratio = float(self.num.sum()) / float(self.den.sum())
                influence = influence + (self.num - ratio * self.den) / den_mean
        return float(influence.std() / np.sqrt(n)) if n > 1 else 0.0


# SLOPE++ (Tucker & Lee 2021, as in OBP's *Tuning estimators): one-sided 95% normal quantile
# for the confidence widths, and the constant of its pairwise test.
Z_ONE_SIDED = 1.6448536269514722
_SLOPE_C = float(np.sqrt(6) - 1)


def slope_select(values: Sequence[float], widths: Sequence[float]) -> int:
    """SLOPE++: index of the candidate selected by Lepski's principle.

    Candidates are visited from the widest confidence width (least biased, most variable) to the
    narrowest; one is accepted while ``|v_i - v_j| <= w_i + C·w_j`` holds against every accepted
    wider candidate j, and the last accepted wins. A narrower, more biased estimate is trusted
    only while it agrees with every less biased one.
    """
    order = sorted(range(len(values)), key=lambda i: -widths[i])
    accepted = [order[0]]
    for i in order[1:]:
        if all(abs(values[i] - values[j]) <= widths[i] + _SLOPE_C * widths[j] for j in accepted):
            accepted.append(i)
        else:
            break
    return accepted[-1]


def terms_for(
    name: str,
    reward: FloatArray,
    weight: FloatArray,
    pi_factual: FloatArray,
    q_factual: FloatArray | None,
    q_policy: FloatArray | None,
    refit_noise: Callable[[FloatArray], FloatArray] | None = None,
) -> Terms:
    """Per-round terms of estimator ``name``; ``weight`` = pi_e(a_i | x_i, p_i) / pscore_i.

    ``q_policy`` is the reward model averaged over the evaluation policy at the logged position,
    ``q_factual`` its prediction at the logged action; ``refit_noise(w_hat)`` gives the reward
    model's refit effect on an estimator whose correction weights the residuals by ``w_hat``.
    Switch-DR and DRos tune their hyperparameter by SLOPE++ over a grid from plain DR (no bias)
    to DM (most shrinkage).
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

    def noise(w_hat: FloatArray) -> FloatArray | None:
        return None if refit_noise is None else refit_noise(w_hat)

    if name == "dm":
        return Terms(base=q_policy, noise=noise(np.zeros_like(weight)))
    if name == "dr":
        return Terms(base=q_policy + weight * residual, noise=noise(weight))
    if name == "sndr":
        mean_weight = float(weight.mean()) or 1.0
        return Terms(
            base=q_policy, num=weight * residual, den=weight, noise=noise(weight / mean_weight)
        )
    if name == "switch-dr":
        shrunk = [(tau, np.where(weight <= tau, weight, 0.0)) for tau in _switch_grid(weight)]
    elif name == "dros":
        shrunk = [(lam, _shrink(weight, lam)) for lam in _shrinkage_grid(weight)]
    else:
        raise ValueError(f"unknown estimator {name}")
    candidates = [
        Terms(base=q_policy + w_hat * residual, hyperparameter=h, noise=noise(w_hat))
        for h, w_hat in shrunk
    ]
    best = slope_select(
        [c.value() for c in candidates], [Z_ONE_SIDED * c.standard_error() for c in candidates]
    )
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
