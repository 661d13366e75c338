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

Per round the cost is a few small array operations: an action list is validated and hashed once
per distinct JSON text (clients resend the same catalogue), and a rank hands its hashed request
to the reward (:class:`~dataflywheel.decide.learner.Encoding`), which only runs the update.

Probabilities are exact: Thompson sampling is run as probability matching — the chance that each
action's posterior score is the largest is computed by deterministic quadrature, and the served
action is drawn from exactly those probabilities (mixed with the floor).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

from dataflywheel.errors import ModelError

from .features import FeatureHasher, JsonCache, parse_action, parse_actions, parse_context
from .learner import Learner, LearnerConfig

QUADRATURE_POINTS = 16
_ROW_BLOCK = 64
"""Rows of the covariance updated per step of the rank-one update (a small temporary)."""
WEIGHTS_FILE = "weights.npz"


@cache
def _grid(points: int) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Normal quantiles ``z_n`` of the midpoints ``u_n`` of (0, 1), and the weights
    ``1 / (points · u_n)`` of the midpoint rule with action k's own factor divided out."""
    u = (np.arange(points) + 0.5) / points
    return ndtri(u), 1.0 / (points * u)


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
    # Actions whose 4-sigma upper bound is below another's 4-sigma lower bound win with
    # P < 1e-9 and hardly move the others' integrals: leave them out.
    live = means + 4.0 * sds >= (means - 4.0 * sds).max()
    pruned = not live.all()
    m, sd = (means[live], sds[live]) if pruned else (means, sds)
    z, weights = _grid(points)
    s = m[:, None] + sd[:, None] * z
    # The product runs over all j; the weights divide action k's own factor Φ(z_n) = u_n out.
    p = ndtr((s[:, :, None] - m) / sd).prod(axis=2) @ weights
    p /= p.sum()
    if not pruned:
        return p
    out = np.zeros(len(means))
    out[live] = p
    return out


def _argmax_onehot(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Uniform over the best-scoring actions (ties split exactly)."""
    best = scores >= scores.max() - 1e-12
    return best / best.sum()


def _softmax(scores: npt.NDArray[np.float64], lam: float) -> npt.NDArray[np.float64]:
    e = np.exp(lam * (scores - scores.max()))
    return e / e.sum()


@dataclass(frozen=True, slots=True)
class _Actions:
    """A validated action list with its hashed ``action ∪ 1`` sides, shape (actions, 1, width)."""

    ids: list[str]
    hashes: npt.NDArray[np.uint64]
    values: npt.NDArray[np.float64]


def merge_duplicates(
    idx: npt.NDArray[np.intp], val: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """A sparse vector with distinct indices: values of repeated indices (hash collisions,
    padding) summed, zeros dropped (a zero changes no weight in a Kalman step)."""
    keep = val != 0.0
    if not keep.all():
        idx, val = idx[keep], val[keep]
    order = np.argsort(idx)
    idx, val = idx[order], val[order]
    distinct = idx[1:] != idx[:-1]
    if distinct.all():
        return idx, val
    starts = np.flatnonzero(np.concatenate(([True], distinct)))
    return idx[starts], np.add.reduceat(val, starts)


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
        self._actions = JsonCache(self._parse_actions)

    def _parse_actions(self, actions: Any) -> _Actions:
        ids, feats = parse_actions(actions, id_feature=self.config.id_feature)
        return _Actions(ids, *self.hasher.actions(feats))

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
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64], Any]:
        cfg = self.config
        acts = self._actions(actions)
        ch, cv = self.hasher.context(parse_context(context))
        idx, val = self.hasher.cross(ch, cv, acts.hashes, acts.values)
        request = (ch, cv, acts)
        mu = (self.mean[idx] * val).sum(axis=(1, 2))
        if cfg.exploration == "softmax" and cfg.algorithm == "linear-ts":
            return acts.ids, _softmax(mu, cfg.softmax_lambda), mu, request
        sd = np.sqrt(self._variance(idx, val))
        if cfg.algorithm == "linear-ts":
            return acts.ids, argmax_probabilities(mu, cfg.ts_scale * sd), mu, request
        ucb = mu + cfg.alpha * sd
        if cfg.exploration == "softmax":
            return acts.ids, _softmax(ucb, cfg.softmax_lambda), mu, request
        return acts.ids, _argmax_onehot(ucb), mu, request

    def _encode(self, request: Any, index: int) -> Any:
        """The hashed context and the action's side: a few hundred bytes per pending decision."""
        ch, cv, acts = request
        return ch, cv, acts.hashes[index, 0], acts.values[index, 0]

    def _learn(
        self,
        context: Any,
        actions: Sequence[Any],
        chosen: int,
        probability: float,
        reward: float,
        payload: Any,
    ) -> None:
        """One Kalman step on the served action's vector (a regression oracle: no IPS weight)."""
        if payload is None:
            _, feats = parse_action(actions[chosen], chosen, id_feature=self.config.id_feature)
            ch, cv = self.hasher.context(parse_context(context))
            ah, av = self.hasher.actions([feats])
            payload = ch, cv, ah[0, 0], av[0, 0]
        idx, val = self.hasher.cross(*payload)
        where, x = merge_duplicates(idx.ravel(), val.ravel())
        noise = self.config.noise_variance
        if self.full:
            # cov is symmetric, so its rows at ``where`` are its columns there (a contiguous
            # read). Neither product goes through BLAS: a threaded BLAS spinning on a busy
            # machine made this step several times slower than a plain loop over the memory.
            u = np.einsum("i,ij->j", x, self.cov[where])
            v = float(noise + x @ u[where])
            self.mean += u * ((reward - self.mean[where] @ x) / v)
            scaled = u / v
            for start in range(0, len(u), _ROW_BLOCK):  # in place, a small block at a time
                rows = slice(start, start + _ROW_BLOCK)
                self.cov[rows] -= np.multiply.outer(u[rows], scaled)
            return
        mean, var = self.mean[where], self.var[where]
        sx = var * x
        v = float(noise + sx @ x)
        self.mean[where] = mean + sx * ((reward - mean @ x) / v)
        self.var[where] = var - sx * sx / v

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
