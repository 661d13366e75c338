"""Cross-fitted reward models q(x, a, position) for the model-based off-policy estimators.

DM and the DR family need an estimate of the expected reward of every action at the logged
round's position. Cross-fitting (each round predicted by a model that never saw it) keeps the
model's own fitting noise out of the DR correction term.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numpy.typing import NDArray
from scipy.sparse.linalg import splu
from sklearn.linear_model import LogisticRegression, Ridge

__all__ = ["RewardPredictions", "fit_predict_rewards"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# Prior strength, in rounds, pulling sparse (action, position) cells toward the mean.
_PSEUDO_COUNT = 1.0
# Inverse L2 strengths tried for the linear model, most regularised first; chosen by out-of-fold
# loss. Sparse rewards (a few dozen clicks) call for strong shrinkage, rich logs for little.
_C_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
# The intercept is unpenalised; this negligible term keeps the Hessian factorisable even when
# every prediction saturates at 0 or 1.
_INTERCEPT_JITTER = 1e-9


@dataclass(frozen=True)
class _Refit:
    """What the first-order effect of refitting the model needs (see ``refit_noise``)."""

    design: sp.csr_matrix  # (n, p) features of each logged round, intercept included
    solve: Callable[[FloatArray], FloatArray]  # x -> A⁻¹ x, A the penalised Hessian
    gradient: Callable[[FloatArray], FloatArray]  # c (n, n_actions) -> sum_i,a c_ia phi(i, a)
    action: IntArray
    residual: FloatArray
    logistic: bool


@dataclass(frozen=True)
class RewardPredictions:
    """Cross-fitted predictions at the logged action and for every action at the logged position."""

    factual: FloatArray  # (n,) q(x_i, a_i, p_i)
    all_actions: FloatArray  # (n, n_actions) q(x_i, a, p_i)
    model: str  # "logistic", "ridge" or "means"
    strength: float | None = None  # chosen inverse L2 strength C of the linear model
    refit: _Refit | None = field(default=None, repr=False)

    def refit_noise(self, policy: FloatArray, factual_weight: FloatArray) -> FloatArray:
        """Centred per-round effect, to first order, of refitting the model on a resample.

        For an estimate ``mean_i(sum_a policy[i, a] q(i, a) - factual_weight[i] q(i, a_i)) + ...``
        a change of the logs moves the model by ``A⁻¹ Σ_j φ_j (r_j − q_j)`` (A: penalised
        Hessian), hence the estimate by ``g·A⁻¹ φ_j (r_j − q_j)`` per round. A bootstrap holding
        the model fixed leaves this out, which makes DM look almost certain.
        """
        refit = self.refit
        if refit is None:
            return np.zeros_like(self.factual)
        n = self.factual.shape[0]
        mix = policy * _slope(self.all_actions, refit.logistic)
        mix[np.arange(n), refit.action] -= factual_weight * _slope(self.factual, refit.logistic)
        gradient = refit.gradient(mix)
        direction = refit.solve(gradient)
        noise = np.asarray(refit.design @ direction).ravel() * refit.residual
        return np.asarray(noise - noise.mean(), dtype=np.float64)


def _make_refit(
    design: sp.csr_matrix,
    penalty: FloatArray,
    gradient: Callable[[FloatArray], FloatArray],
    action: IntArray,
    residual: FloatArray,
    factual: FloatArray,
    logistic: bool,
) -> _Refit:
    """Factorise the penalised Hessian ``Σ_i q'_i φ_i φ_iᵀ + diag(penalty)`` once.

    It stays sparse (the action and position one-hots are block-diagonal), so a catalogue of
    thousands of actions costs a sparse LU, not a dense p x p inverse.
    """
    weights = _slope(factual, logistic)
    hessian = design.T @ design.multiply(weights[:, None]) + sp.diags(penalty)
    factor = splu(sp.csc_matrix(hessian))
    return _Refit(design, factor.solve, gradient, action, residual, logistic)


def _slope(q: FloatArray, logistic: bool) -> FloatArray:
    """dq/dscore: q(1 - q) for the logistic link, 1 for the identity."""
    return q * (1.0 - q) if logistic else np.ones_like(q)


def fit_predict_rewards(
    reward: FloatArray,
    action: IntArray,
    position: IntArray,
    context: FloatArray | None,
    n_actions: int,
    n_positions: int,
    rng: np.random.Generator,
    action_context: FloatArray | None = None,
    n_folds: int = 3,
) -> RewardPredictions:
    """Fit on k-1 folds, predict the held-out fold, for every fold.

    With a context or action features: logistic regression (binary rewards, as in OBP's
    protocol) or ridge regression (other rewards) on standardised context + action one-hot +
    standardised action features + position one-hot, its L2 strength chosen by out-of-fold loss.
    Action features let rarely rewarded actions borrow strength from similar ones. Without
    either: per-(action, position) means, shrunk by one pseudo-round toward the mean.
    """
    n = reward.shape[0]
    folds = rng.permutation(n) % n_folds if n >= 2 * n_folds else np.zeros(n, dtype=np.int64)
    binary = bool(np.isin(reward, (0.0, 1.0)).all())
    if context is None and action_context is None:
        table = np.empty((n, n_actions))
        for test, train in _splits(folds, n_folds):
            means = _cell_means(
                reward[train], action[train], position[train], n_actions, n_positions
            )
            table[test] = means[:, position[test]].T
        factual = table[np.arange(n), action]
        refit = _cell_refit(action, position, reward, factual, n_actions, n_positions)
        return RewardPredictions(factual, table, "means", refit=refit)

    features = np.zeros((n, 0)) if context is None else context
    items = np.zeros((n_actions, 0)) if action_context is None else action_context
    fits: list[tuple[FloatArray, float, FloatArray]] = []
    for strength in _C_GRID:
        all_actions = np.empty((n, n_actions))
        for test, train in _splits(folds, n_folds):
            all_actions[test] = _linear_fit_predict(
                reward[train],
                action[train],
                position[train],
                features[train],
                features[test],
                position[test],
                items,
                n_positions,
                binary,
                strength,
            )
        losses = _round_losses(reward, all_actions[np.arange(n), action], binary)
        fits.append((losses, strength, all_actions))
    strength, all_actions = _one_standard_error(fits)
    factual = all_actions[np.arange(n), action]
    refit = _linear_refit(
        features, items, action, position, reward, factual, n_positions, strength, binary
    )
    kind = "logistic" if binary else "ridge"
    return RewardPredictions(factual, all_actions, kind, strength, refit)


def _one_standard_error(
    fits: list[tuple[FloatArray, float, FloatArray]],
) -> tuple[float, FloatArray]:
    """The most regularised fit whose out-of-fold loss is within one standard error of the best.

    With a few dozen positive rewards the losses of neighbouring strengths differ by noise; the
    one-standard-error rule (Breiman et al. 1984) then prefers the smoother model. The error is
    that of the per-round loss difference, as every fit is scored on the same rounds.
    """
    best = min(fits, key=lambda fit: float(fit[0].mean()))[0]
    return next(
        (strength, predictions)
        for losses, strength, predictions in fits
        if (gap := losses - best).mean() <= gap.std() / np.sqrt(gap.size)
    )


def _splits(folds: IntArray, n_folds: int) -> list[tuple[NDArray[np.bool_], NDArray[np.bool_]]]:
    """(held-out mask, training mask) per fold; a single fold trains and predicts on all rows."""
    out = []
    for fold in np.unique(folds):
        test = folds == fold
        out.append((test, ~test if n_folds > 1 and not test.all() else test))
    return out


def _round_losses(reward: FloatArray, predicted: FloatArray, binary: bool) -> FloatArray:
    """Per-round log-loss (binary rewards) or squared error of the cross-fitted predictions."""
    if not binary:
        return np.asarray((reward - predicted) ** 2, dtype=np.float64)
    p = np.clip(predicted, 1e-12, 1 - 1e-12)
    return np.asarray(-(reward * np.log(p) + (1 - reward) * np.log(1 - p)), dtype=np.float64)


def _cell_means(
    reward: FloatArray, action: IntArray, position: IntArray, n_actions: int, n_positions: int
) -> FloatArray:
    """Per-(action, position) mean reward, (n_actions, n_positions), empty cells get the mean."""
    cell = action * n_positions + position
    size = n_actions * n_positions
    sums = np.bincount(cell, weights=reward, minlength=size)
    counts = np.bincount(cell, minlength=size)
    prior = float(reward.mean())
    return ((sums + _PSEUDO_COUNT * prior) / (counts + _PSEUDO_COUNT)).reshape(
        n_actions, n_positions
    )


def _cell_refit(
    action: IntArray,
    position: IntArray,
    reward: FloatArray,
    factual: FloatArray,
    n_actions: int,
    n_positions: int,
) -> _Refit:
    """The cell-means model as ridge regression on cell one-hots (penalty: the pseudo-count)."""
    n = action.shape[0]
    size = n_actions * n_positions
    design = sp.csr_matrix((np.ones(n), (np.arange(n), action * n_positions + position)), (n, size))

    def gradient(mix: FloatArray) -> FloatArray:
        out = np.zeros((n_actions, n_positions))
        for p in range(n_positions):
            out[:, p] = mix[position == p].sum(axis=0)
        return out.ravel()

    penalty = np.full(size, _PSEUDO_COUNT)
    return _make_refit(design, penalty, gradient, action, reward - factual, factual, False)


def _onehot(codes: IntArray, width: int) -> sp.csr_matrix:
    rows = np.arange(codes.shape[0])
    return sp.csr_matrix((np.ones(rows.size), (rows, codes)), (rows.size, width))


def _design(
    scaled: FloatArray,
    action: IntArray,
    n_actions: int,
    item_rows: FloatArray,
    position: IntArray,
    n_positions: int,
) -> sp.csr_matrix:
    """The linear model's features: context, action one-hot, action features, position."""
    return sp.hstack(
        [
            sp.csr_matrix(scaled),
            _onehot(action, n_actions),
            sp.csr_matrix(item_rows),
            _onehot(position, n_positions),
        ],
        format="csr",
    )


def _linear_fit_predict(
    reward: FloatArray,
    action: IntArray,
    position: IntArray,
    context: FloatArray,
    context_new: FloatArray,
    position_new: IntArray,
    items: FloatArray,
    n_positions: int,
    binary: bool,
    strength: float,
) -> FloatArray:
    """Fit an additive linear model and predict q for every action at the new rows' positions.

    The model is additive in context, action and position, so the score of (x, a, p) is
    ``x.beta + gamma[a] + f[a].eta + delta[p] + b``: every action's score at a round is the
    round's base score plus that action's effect, one matrix product for all actions.
    """
    n_actions = items.shape[0]
    n_new = context_new.shape[0]
    if binary and np.unique(reward).size < 2:
        return np.full((n_new, n_actions), float(reward.mean()))
    scaled, scaled_new = _standardise(context, context_new)
    item_rows, item_all = _standardise(items[action], items)
    design = _design(scaled, action, n_actions, item_rows, position, n_positions)
    model: LogisticRegression | Ridge
    # lbfgs leaves the intercept unpenalised, so strong shrinkage pulls toward the base rate.
    model = LogisticRegression(C=strength, max_iter=1000) if binary else Ridge(alpha=1.0 / strength)
    model.fit(design, reward)
    coef = np.asarray(model.coef_).ravel()
    d, k = context.shape[1], items.shape[1]
    beta, gamma = coef[:d], coef[d : d + n_actions]
    eta, delta = coef[d + n_actions : d + n_actions + k], coef[d + n_actions + k :]
    intercept = float(np.ravel(model.intercept_)[0])
    base = scaled_new @ beta + delta[position_new] + intercept
    score = base[:, None] + (gamma + item_all @ eta)[None, :]
    if binary:
        return np.asarray(1.0 / (1.0 + np.exp(-score)), dtype=np.float64)
    return np.asarray(score, dtype=np.float64)


def _linear_refit(
    context: FloatArray,
    items: FloatArray,
    action: IntArray,
    position: IntArray,
    reward: FloatArray,
    factual: FloatArray,
    n_positions: int,
    strength: float,
    binary: bool,
) -> _Refit:
    """The linear model's features on all logged rounds, for the delta-method refit effect."""
    n, n_actions = action.shape[0], items.shape[0]
    scaled, _ = _standardise(context, context)
    item_rows, item_all = _standardise(items[action], items)
    design = sp.hstack(
        [
            _design(scaled, action, n_actions, item_rows, position, n_positions),
            sp.csr_matrix(np.ones((n, 1))),
        ],
        format="csr",
    )

    def gradient(mix: FloatArray) -> FloatArray:
        per_round, per_action = mix.sum(axis=1), mix.sum(axis=0)
        return np.concatenate(
            [
                scaled.T @ per_round,
                per_action,
                per_action @ item_all,
                np.bincount(position, weights=per_round, minlength=n_positions),
                [per_round.sum()],
            ]
        )

    penalty = np.full(design.shape[1], 1.0 / strength)
    penalty[-1] = _INTERCEPT_JITTER
    return _make_refit(design, penalty, gradient, action, reward - factual, factual, binary)


def _standardise(fit: FloatArray, other: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Both arrays centred and scaled by ``fit``'s column statistics (constant columns: scale 1)."""
    if fit.shape[1] == 0:
        return fit, other
    mean = fit.mean(axis=0)
    scale = fit.std(axis=0)
    scale[scale == 0] = 1.0
    return (fit - mean) / scale, (other - mean) / scale
