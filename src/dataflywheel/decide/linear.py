"""Built-in linear bandits over hashed features: linear Thompson sampling and LinUCB.

One shared Bayesian linear regression of reward on ``(context ∪ 1) ⊗ (action ∪ 1)`` (so it
covers disjoint per-action models through the action-id feature, and generalises through action
features). Updates are Kalman (recursive least squares) steps on the chosen action's vector:

- ``covariance="diagonal"`` (default): a per-weight posterior variance, O(non-zeros) per round,
  any ``bits``; the exact Kalman step projected back onto a diagonal covariance.
- ``covariance="full"``: the exact posterior covariance (Sherman–Morrison rank-1 update of the
  inverse Gram matrix), O(dim²) per round, so limited to ``bits ≤ 12``.

``benchmarks/bench_bandit_vw.py`` measures both; the diagonal one wins on speed by orders of
magnitude and loses little or no reward, because at affordable ``bits`` the full one suffers
hash collisions.

Probabilities are exact: Thompson sampling is run as probability matching — the chance that each
action's posterior score is the largest is computed by deterministic quadrature, and the served
action is drawn from exactly those probabilities (mixed with the floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

from dataflywheel.errors import ModelError

from .features import FeatureHasher, parse_action, parse_context, parse_request
from .learner import Learner, LearnerConfig

QUADRATURE_POINTS = 16
WEIGHTS_FILE = "weights.npz"


@cache
def _grid(points: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Midpoints ``u_n`` of (0, 1) and their normal quantiles ``z_n``."""
    u = (np.arange(points) + 0.5) / points
    return u, ndtri(u)


def argmax_probabilities(
    means: npt.NDArray[np.float64], sds: npt.NDArray[np.float64], points: int = QUADRATURE_POINTS
) -> npt.NDArray[np.float64]:
    """P(action k has the largest score) for independent scores ``N(means[k], sds[k]²)``.

    ``P_k = ∫₀¹ Π_{j≠k} Φ((F_k⁻¹(u) − m_j) / s_j) du``: the integrand is monotone and bounded,
    so the midpoint rule in ``u`` errs by less than ``1/points`` even when one score is much
    sharper than another (typically by far less). The served action is drawn from the returned
    probabilities themselves, so logged propensities stay exact whatever this error.
    """
    sds = np.maximum(sds, 1e-12)
    out = np.zeros(len(means))
    # Actions whose 4-sigma upper bound is below another's 4-sigma lower bound win with
    # P < 1e-9 and hardly move the others' integrals: leave them out.
    live = np.flatnonzero(means + 4.0 * sds >= (means - 4.0 * sds).max())
    m, sd = means[live], sds[live]
    u, z = _grid(points)
    s = m[:, None] + sd[:, None] * z[None, :]
    # The product runs over all j; dividing by action k's own factor Φ(z_n) = u_n removes it.
    cdf = ndtr((s[:, :, None] - m) / sd)
    out[live] = (cdf.prod(axis=2) / u).mean(axis=1)
    return out / out.sum()


def _argmax_onehot(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Uniform over the best-scoring actions (ties split exactly)."""
    best = scores >= scores.max() - 1e-12
    return best / best.sum()


def _softmax(scores: npt.NDArray[np.float64], lam: float) -> npt.NDArray[np.float64]:
    e = np.exp(lam * (scores - scores.max()))
    return e / e.sum()


class LinearLearner(Learner):
    """Linear Thompson sampling (``linear-ts``) or LinUCB (``linear-ucb``) on hashed features."""

    kind = "linear"

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        self.hasher = FeatureHasher(config.bits)
        dim = self.hasher.dim
        self.mean = np.zeros(dim)
        self.full = config.covariance == "full"
        if self.full:
            self.cov = np.eye(dim) * config.prior_variance
        else:
            self.var = np.full(dim, config.prior_variance)

    def _variance(
        self, idx: npt.NDArray[np.intp], val: npt.NDArray[np.float64]
    ) -> npt.NDArray[np.float64]:
        """Posterior variance of each action's score, leaving out the terms all actions share."""
        idx = idx[:, :, 1:].reshape(len(idx), -1)
        val = val[:, :, 1:].reshape(len(val), -1)
        if self.full:
            block = self.cov[idx[:, :, None], idx[:, None, :]]
            out: npt.NDArray[np.float64] = np.einsum("ki,kij,kj->k", val, block, val)
            return np.maximum(out, 0.0)
        return (self.var[idx] * val * val).sum(axis=1)

    def _policy(
        self, context: Any, actions: Sequence[Any]
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        cfg = self.config
        req = parse_request(context, actions, id_feature=cfg.id_feature)
        idx, val = self.hasher.outer(req.context, req.actions)
        mu = (self.mean[idx] * val).sum(axis=(1, 2))
        if cfg.exploration == "softmax" and cfg.algorithm == "linear-ts":
            return req.action_ids, _softmax(mu, cfg.softmax_lambda), mu
        sd = np.sqrt(self._variance(idx, val))
        if cfg.algorithm == "linear-ts":
            return req.action_ids, argmax_probabilities(mu, cfg.ts_scale * sd), mu
        ucb = mu + cfg.alpha * sd
        if cfg.exploration == "softmax":
            return req.action_ids, _softmax(ucb, cfg.softmax_lambda), mu
        return req.action_ids, _argmax_onehot(ucb), mu

    def _learn(
        self, context: Any, actions: Sequence[Any], chosen: int, probability: float, reward: float
    ) -> None:
        """One Kalman step on the served action's vector (a regression oracle: no IPS weight)."""
        _, feats = parse_action(actions[chosen], chosen, id_feature=self.config.id_feature)
        idx, val = self.hasher.outer(parse_context(context), [feats])
        where, inverse = np.unique(idx.ravel(), return_inverse=True)
        x = np.bincount(inverse, weights=val.ravel())
        residual = reward - self.mean[where] @ x
        noise = self.config.noise_variance
        if self.full:
            u = self.cov[:, where] @ x
            v = float(noise + x @ u[where])
            self.mean += u * (residual / v)
            self.cov -= np.outer(u, u / v)
            return
        sx = self.var[where] * x
        v = float(noise + sx @ x)
        self.mean[where] += sx * (residual / v)
        self.var[where] -= sx * sx / v

    def _save_model(self, path: Path) -> None:
        second = {"cov": self.cov} if self.full else {"var": self.var}
        np.savez(path / WEIGHTS_FILE, mean=self.mean, **second)

    def _load_model(self, path: Path) -> None:
        name = "cov" if self.full else "var"
        try:
            with np.load(path / WEIGHTS_FILE, allow_pickle=False) as data:
                mean, second = data["mean"], data[name]
        except (OSError, KeyError, ValueError) as exc:
            raise ModelError(f"cannot read linear learner weights in {path}: {exc}") from exc
        expected = self.cov.shape if self.full else self.var.shape
        if mean.shape != self.mean.shape or second.shape != expected:
            raise ModelError(f"linear learner weights in {path} do not match its settings")
        self.mean = mean.astype(np.float64)
        if self.full:
            self.cov = second.astype(np.float64)
        else:
            self.var = second.astype(np.float64)
