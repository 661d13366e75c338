"""Off-policy evaluation: the value of an evaluation policy estimated from another policy's logs.

Arrays are named as in the Open Bandit Pipeline so its users feel at home: ``reward``,
``action``, ``pscore`` (the logging policy's propensity of the logged action at its position),
``action_dist`` (rounds x actions x positions: the evaluation policy's probabilities) and
``position``, plus ``context`` (rounds x features) and ``action_context`` (actions x features)
for the reward model of the model-based estimators. Every estimate comes with a 95%
percentile-bootstrap interval, and ``"auto"`` recommends one estimator for the data at hand
without any ground truth (see docs/off-policy.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.estimators import Z_ONE_SIDED, Terms, slope_select, terms_for
from dataflywheel.evaluation.reward_model import fit_predict_rewards

__all__ = ["ESTIMATORS", "Estimate", "off_policy"]

ESTIMATORS = ("ipw", "snipw", "dm", "dr", "sndr", "switch-dr", "dros", "replay")
# Below this effective sample size the bootstrap says little, and nothing can check a
# model-based estimate's bias: "auto" then picks a weighted estimator with an ESS interval.
MIN_ESS = 30.0
_WEIGHTED = ("snipw", "ipw")
_MODEL_BASED = frozenset({"dm", "dr", "sndr", "switch-dr", "dros"})
_SUM_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Estimate:
    """One estimator's value with its 95% bootstrap interval and bootstrap standard error.

    ``ess`` is the Kish effective sample size (Σw)²/Σw² of the importance weights; below
    ``MIN_ESS`` the weighted estimators' intervals are t intervals on its degrees of freedom.

    ``hyperparameter`` is Switch-DR's τ or DRos's λ as chosen by SLOPE++; ``reason`` is set on the
    ``"auto"`` entry only, where ``name`` is the recommended estimator.
    """

    name: str
    value: float
    low: float
    high: float
    std: float
    hyperparameter: float | None = None
    reason: str = ""
    ess: float | None = None


def off_policy(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None = None,
    context: ArrayLike | None = None,
    estimators: str | Sequence[str] = "all",
    random_state: int | np.random.Generator | None = None,
    n_bootstrap: int = 200,
    action_context: ArrayLike | None = None,
) -> dict[str, Estimate]:
    """Estimate the evaluation policy's mean reward per round with several estimators.

    ``action_context`` holds one feature row per action (e.g. item category, price); the reward
    model of DM and the DR family uses it so that rarely logged actions borrow strength from
    similar ones. Returns ``{name: Estimate}`` for each requested estimator (``"replay"`` is
    included in ``"all"`` only when the logging propensities are constant, i.e. the logs are
    uniform random) plus ``"auto"``: the recommended estimator, with a one-sentence ``reason``.
    """
    data = _validate(reward, action, pscore, action_dist, position, context, action_context)
    names = _resolve_names(estimators, data.uniform_logging)
    if n_bootstrap < 1:
        raise ValidationError("n_bootstrap must be at least 1", field="n_bootstrap")
    rng = np.random.default_rng(random_state)

    n = data.reward.shape[0]
    rows = np.arange(n)
    pi_at_position = data.action_dist[rows, :, data.position]  # (n, n_actions)
    pi_factual = pi_at_position[rows, data.action]
    weight = pi_factual / data.pscore
    q_factual = q_policy = refit_noise = None
    if _MODEL_BASED.intersection(names):
        n_actions, n_positions = data.action_dist.shape[1:]
        model = fit_predict_rewards(
            data.reward,
            data.action,
            data.position,
            data.context,
            n_actions,
            n_positions,
            rng,
            action_context=data.action_context,
        )
        q_factual = model.factual
        q_policy = (pi_at_position * model.all_actions).sum(axis=1)
        refit_noise = partial(model.refit_noise, pi_at_position)

    terms = {
        name: terms_for(name, data.reward, weight, pi_factual, q_factual, q_policy, refit_noise)
        for name in names
    }
    results = _bootstrap(terms, rng, n_bootstrap)
    ess = _kish(weight)
    results = {name: _honest(e, weight, data.reward, ess) for name, e in results.items()}
    results["auto"] = _choose(results, weight, ess)
    return results


@dataclass(frozen=True)
class _Logs:
    reward: NDArray[np.float64]
    action: NDArray[np.int64]
    pscore: NDArray[np.float64]
    action_dist: NDArray[np.float64]
    position: NDArray[np.int64]
    context: NDArray[np.float64] | None
    action_context: NDArray[np.float64] | None
    uniform_logging: bool


def _vector(value: ArrayLike | None, field: str) -> NDArray[np.float64]:
    """A finite 1-D float array, or a ValidationError naming ``field``."""
    if value is None:
        raise ValidationError(f"{field} is required", field=field)
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numeric", field=field) from exc
    if array.ndim != 1:
        raise ValidationError(f"{field} must be 1-D, got shape {array.shape}", field=field)
    if array.size == 0:
        raise ValidationError(f"{field} is empty", field=field)
    if not np.isfinite(array).all():
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    return array


def _indices(value: ArrayLike | None, field: str, n: int, upper: int) -> NDArray[np.int64]:
    """Integer codes in [0, upper), one per round."""
    array = _vector(value, field)
    if array.shape[0] != n:
        raise ValidationError(f"{field} has {array.shape[0]} rows, reward has {n}", field=field)
    if (array != np.round(array)).any():
        raise ValidationError(f"{field} must hold integers", field=field)
    if array.min() < 0 or array.max() >= upper:
        raise ValidationError(f"{field} must lie in [0, {upper}) to index action_dist", field=field)
    return array.astype(np.int64)


def _matrix(value: ArrayLike, field: str, rows: int, what: str) -> NDArray[np.float64]:
    """A finite 2-D float feature matrix with ``rows`` rows (1-D means one feature)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numeric", field=field) from exc
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] != rows:
        raise ValidationError(
            f"{field} must have shape ({what}={rows}, features), got {array.shape}", field=field
        )
    if not np.isfinite(array).all():
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    return array


def _validate(
    reward: ArrayLike,
    action: ArrayLike,
    pscore: ArrayLike,
    action_dist: ArrayLike,
    position: ArrayLike | None,
    context: ArrayLike | None,
    action_context: ArrayLike | None,
) -> _Logs:
    """Check shapes and values; every failure names the offending argument."""
    rewards = _vector(reward, "reward")
    n = rewards.shape[0]
    scores = _vector(pscore, "pscore")
    if scores.shape[0] != n:
        raise ValidationError(f"pscore has {scores.shape[0]} rows, reward has {n}", field="pscore")
    if (scores <= 0).any() or (scores > 1 + _SUM_TOLERANCE).any():
        raise ValidationError("pscore must lie in (0, 1]", field="pscore")

    if action_dist is None:
        raise ValidationError("action_dist is required", field="action_dist")
    dist = np.asarray(action_dist, dtype=np.float64)
    if dist.ndim == 2:
        dist = dist[:, :, None]
    if dist.ndim != 3 or dist.shape[0] != n or 0 in dist.shape:
        raise ValidationError(
            f"action_dist must have shape (rounds={n}, actions, positions), got {dist.shape}",
            field="action_dist",
        )
    if not np.isfinite(dist).all() or (dist < 0).any():
        raise ValidationError("action_dist must be finite and non-negative", field="action_dist")
    if np.abs(dist.sum(axis=1) - 1.0).max() > _SUM_TOLERANCE:
        raise ValidationError(
            "action_dist must sum to 1 over actions for every round and position",
            field="action_dist",
        )
    n_actions, n_positions = dist.shape[1:]
    actions = _indices(action, "action", n, n_actions)
    positions = (
        np.zeros(n, dtype=np.int64)
        if position is None
        else _indices(position, "position", n, n_positions)
    )
    features = None if context is None else _matrix(context, "context", n, "rounds")
    items = (
        None
        if action_context is None
        else _matrix(action_context, "action_context", n_actions, "actions")
    )
    uniform = bool(np.ptp(scores) <= _SUM_TOLERANCE * scores.max())
    return _Logs(rewards, actions, scores, dist, positions, features, items, uniform)


def _resolve_names(estimators: str | Sequence[str], uniform_logging: bool) -> list[str]:
    """The estimators to compute, in canonical order."""
    if estimators == "all":
        return [e for e in ESTIMATORS if e != "replay" or uniform_logging]
    requested = [estimators] if isinstance(estimators, str) else list(estimators)
    unknown = [e for e in requested if e not in ESTIMATORS and e != "auto"]
    if unknown or not requested:
        raise ValidationError(
            f"unknown estimators {unknown}; choose from {', '.join(ESTIMATORS)} or 'all'",
            field="estimators",
        )
    if "replay" in requested and not uniform_logging:
        raise ValidationError(
            "replay applies only to uniform-random logs (constant pscore)", field="estimators"
        )
    names = [e for e in ESTIMATORS if e in requested]
    return names or [e for e in ESTIMATORS if e != "replay" or uniform_logging]


def _bootstrap(
    terms: dict[str, Terms], rng: np.random.Generator, n_bootstrap: int
) -> dict[str, Estimate]:
    """Point estimates and percentile intervals from one shared resampling of the rounds.

    The reward model is not refitted per resample: its first-order refit effect (``Terms.noise``)
    stands in for that. Tuned hyperparameters are held fixed.
    """
    columns: list[NDArray[np.float64]] = []
    for t in terms.values():
        columns.extend(a for a in (t.base, t.num, t.den, t.noise) if a is not None)
    table = np.column_stack(columns)
    n = table.shape[0]
    chunk = max(1, 4_000_000 // n)
    sums = []
    for start in range(0, n_bootstrap, chunk):
        size = min(chunk, n_bootstrap - start)
        rows = rng.integers(0, n, size=(size, n)) + n * np.arange(size)[:, None]
        counts = np.bincount(rows.ravel(), minlength=size * n).reshape(size, n)
        sums.append(counts @ table)
    boot_sums = np.vstack(sums)  # (n_bootstrap, columns)

    results: dict[str, Estimate] = {}
    col = 0
    for name, t in terms.items():
        boot = np.zeros(n_bootstrap)
        if t.base is not None:
            boot += boot_sums[:, col] / n
            col += 1
        if t.num is not None and t.den is not None:
            num, den = boot_sums[:, col], boot_sums[:, col + 1]
            boot += np.divide(num, den, out=np.zeros_like(num), where=den > 0)
            col += 2
        if t.noise is not None:
            boot += boot_sums[:, col] / n
            col += 1
        low, high = np.quantile(boot, [0.025, 0.975])
        results[name] = Estimate(
            name=name,
            value=t.value(),
            low=float(low),
            high=float(high),
            std=float(boot.std()),
            hyperparameter=t.hyperparameter,
        )
    return results


def _kish(weight: NDArray[np.float64]) -> float:
    total = float(weight.sum())
    return total**2 / float((weight**2).sum()) if total > 0 else 0.0


def _honest(
    e: Estimate, weight: NDArray[np.float64], reward: NDArray[np.float64], ess: float
) -> Estimate:
    """Attach the ESS; below MIN_ESS, widen IPW/SNIPW to a t interval on ESS - 1 degrees of
    freedom (at least 2) whose variance adds one more round at the largest weight with the
    widest reward: a few heavy rounds that happened to agree are not certainty."""
    if e.name not in _WEIGHTED or ess >= MIN_ESS:
        return replace(e, ess=ess)
    span = float(np.ptp(reward)) or max(float(np.abs(reward).max()), 1.0)
    top = float(weight.max())
    scale = weight.size if e.name == "ipw" else float(weight.sum()) + top
    se = float(np.hypot(e.std, top * span / scale))
    half = float(stats.t.ppf(0.975, df=max(ess - 1.0, 2.0))) * se
    low, high = e.value - half, e.value + half
    if e.name == "snipw":  # a weighted mean of rewards stays within their range
        low, high = max(low, float(reward.min())), min(high, float(reward.max()))
    return replace(e, low=low, high=high, std=se, ess=ess)


def _choose(results: dict[str, Estimate], weight: NDArray[np.float64], ess: float) -> Estimate:
    """SLOPE++ over the estimators themselves, with bootstrap standard errors as their widths:
    the narrowest estimate that agrees with every wider (less biased) one. Below MIN_ESS the
    weighted estimate stands alone: SLOPE++ would compare with widths it cannot trust."""
    weighted = [results[name] for name in _WEIGHTED if name in results]
    if ess < MIN_ESS and weighted:
        best = weighted[0]
        reason = (
            f"importance weights give an effective sample size of {ess:.1f} of {weight.size}, "
            f"below {MIN_ESS:.0f}: no model-based estimate can be checked against an unbiased "
            f"one, so {best.name} with a t interval on the ESS degrees of freedom."
        )
        return replace(best, reason=reason)
    ordered = sorted(results.values(), key=lambda e: -e.std)
    best = ordered[slope_select([e.value for e in ordered], [Z_ONE_SIDED * e.std for e in ordered])]
    wider = [e.name for e in ordered if e.std > best.std]
    reason = (
        f"{best.name} has the smallest bootstrap standard error ({best.std:.3g}) of the "
        f"estimates that agree with every more variable one ({', '.join(wider) or 'none'})"
    )
    reason += f"; importance weights give an effective sample size of {ess:.0f} of {weight.size}."
    return Estimate(
        name=best.name,
        value=best.value,
        low=best.low,
        high=best.high,
        std=best.std,
        hyperparameter=best.hyperparameter,
        reason=reason,
        ess=ess,
    )
