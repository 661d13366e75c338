"""Off-policy estimators for ranked lists that use every logged position of every served list.

Arrays are per list (rows) and position (columns): ``reward`` (n x k, e.g. 1 for a click on the
item at that position), ``pscore`` (the logging policy's probability of the logged item at its
position), optionally ``in_list`` (its probability of being anywhere in the list), and the
evaluation policy as ``eval_position`` / ``eval_in_list`` (the same probabilities under the
candidate; :func:`deterministic` builds them from a candidate's ranking).

- ``iips``: independent IPS (Li et al. 2018; Kiyohara et al. 2022; OBP ``SlateIndependentIPS``),
  the weight of position j is its own ratio: unbiased when a position's reward depends only on
  its item.
- ``rips``: reward-interaction IPS (cascade; OBP ``SlateRewardInteractionIPS``), the weight of
  position j is the product of the ratios of positions 1..j: unbiased when a position's reward
  depends on the items above it too, with more variance. The logging probability of a prefix is
  the product of the logged ``pscore`` (exact for Plackett-Luce conditional propensities).
- ``item-ips``: the item-position-free estimator (Li et al. 2018's document-based click model),
  the weight is ratio of in-list probabilities: a candidate that shows the same items in another
  order gets the clicks of those items, so far more positions count; biased by the position
  effect of a reordering.

Every estimate comes with the Kish effective sample size ``(Σw)²/Σw²`` of its position weights
and a t interval on ``ESS - 1`` degrees of freedom whose variance adds, to the sample variance,
one more rewarded position at the largest possible weight (one over the logging policy's
smallest logged probability): so a handful of heavy
weights that happened to carry no reward does not look like certainty. ``lift=True`` estimates
the candidate's value minus the logging policy's on-policy value with per-list paired terms:
positions where both would show the same item nearly cancel.

:func:`aimed_lift` is the estimator for exploration aimed at a candidate's whole lists (each
request served the candidate's list with a known probability, the champion's otherwise): the
difference of the two branches' mean reward per list, a randomised A/B split by design.
:func:`anytime_multiplier` turns a standard error into a half-width that holds at every look at
once (a confidence sequence), for a gate that reads the same growing log again and again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from dataflywheel.errors import ValidationError

__all__ = [
    "SLATE_ESTIMATORS",
    "SlateEstimate",
    "aimed_lift",
    "anytime_multiplier",
    "deterministic",
    "lists_for_half_width",
    "slate_off_policy",
]

FloatArray = NDArray[np.float64]
SLATE_ESTIMATORS = ("iips", "rips", "item-ips")
TIGHTEST_AT = 2_000
"""Lists at which the anytime boundary is narrowest (fixed before any data, as it must be): about
four days of the demo store's traffic. Far from it the boundary widens slowly (7% wider at ten
times as many lists, 17% at a hundred times)."""


@dataclass(frozen=True)
class SlateEstimate:
    """Reward per list under the candidate (or its lift over the logging policy).

    ``std`` is the standard error used by the interval, ``ess`` the Kish effective sample size
    of the position weights, ``lists`` the number of served lists, ``max_weight`` the largest
    position weight possible on these logs.
    """

    name: str
    value: float
    low: float
    high: float
    std: float
    ess: float
    lists: int
    max_weight: float


def deterministic(candidate: ArrayLike, logged: ArrayLike) -> tuple[FloatArray, FloatArray]:
    """``eval_position`` and ``eval_in_list`` of a deterministic ranking.

    ``candidate`` and ``logged`` are integer item codes of shape (lists, k) (any negative code
    pads a short list); a logged item has probability 1 at its position when the candidate puts
    it there, and probability 1 of being in the list when the candidate shows it anywhere.
    """
    cand = np.asarray(candidate)
    shown = np.asarray(logged)
    if cand.ndim != 2 or shown.ndim != 2 or cand.shape[0] != shown.shape[0]:
        raise ValidationError("candidate and logged must be (lists, k) arrays", field="candidate")
    k = shown.shape[1]
    width = min(k, cand.shape[1])
    position = np.zeros(shown.shape)
    position[:, :width] = (cand[:, :width] == shown[:, :width]) & (shown[:, :width] >= 0)
    in_list = (shown[:, :, None] == cand[:, None, :]).any(axis=2) & (shown >= 0)
    return position, in_list.astype(np.float64)


def slate_off_policy(
    reward: ArrayLike,
    pscore: ArrayLike,
    eval_position: ArrayLike,
    *,
    in_list: ArrayLike | None = None,
    eval_in_list: ArrayLike | None = None,
    lift: bool = False,
    alpha: float = 0.05,
    reward_max: float = 1.0,
    max_weight: Mapping[str, float] | None = None,
) -> dict[str, SlateEstimate]:
    """Estimate the candidate's reward per list with ``iips``, ``rips`` and (when both in-list
    probabilities are given) ``item-ips``; with ``lift=True``, its difference from the logging
    policy's observed reward per list. Positions padded with ``pscore`` 1 and reward 0 and
    ``eval_position`` 0 count for nothing. ``max_weight`` maps an estimator to the largest
    weight the candidate can get when the caller knows it (e.g. a candidate that only reorders
    the greedy items of ε-greedy logs: 1 / (1 - ε)); see the module notes for the default."""
    r = _grid(reward, "reward", None)
    p = _grid(pscore, "pscore", r.shape)
    if (p <= 0).any() or (p > 1 + 1e-9).any():
        raise ValidationError("pscore must lie in (0, 1]", field="pscore")
    pi = _probability(eval_position, "eval_position", r.shape)
    if not 0 < alpha < 1:
        raise ValidationError("alpha must lie in (0, 1)", field="alpha")
    ratios = {"iips": (pi, p), "rips": (np.cumprod(pi, axis=1), np.cumprod(p, axis=1))}
    if (in_list is None) != (eval_in_list is None):
        raise ValidationError("in_list and eval_in_list go together", field="in_list")
    if in_list is not None and eval_in_list is not None:
        q = _probability(in_list, "in_list", r.shape)
        if (q <= 0).any():
            raise ValidationError("in_list must lie in (0, 1]", field="in_list")
        ratios["item-ips"] = (_probability(eval_in_list, "eval_in_list", r.shape), q)
    bound = max(float(reward_max), float(np.abs(r).max()))
    logged = r.sum(axis=1) if lift else 0.0
    out = {}
    for name, (num, den) in ratios.items():
        w = num / den
        # The largest weight possible, seen or not; unless told, an item the candidate surely
        # shows and the logging policy showed with the smallest probability logged.
        possible = (max_weight or {}).get(name, 1.0 / float(den.min()))
        top = max(float(w.max()), possible)
        out[name] = _estimate(name, (w * r).sum(axis=1) - logged, w, top, bound, alpha)
    return out


def _estimate(
    name: str, per_list: FloatArray, weight: FloatArray, top: float, bound: float, alpha: float
) -> SlateEstimate:
    n = per_list.size
    total = float(weight.sum())
    ess = total**2 / float((weight**2).sum()) if total > 0 else 0.0
    # One pseudo-list holding a rewarded position at the largest possible weight: rare heavy
    # terms make the mean Poisson-like, and their sample variance alone under-covers.
    spread = np.append((per_list - per_list.mean()) ** 2, (top * bound) ** 2)
    se = float(np.sqrt(spread.sum() / max(n - 1, 1))) / np.sqrt(n)
    # Degrees of freedom: the fewer of the effective positions and the effective lists that
    # carry the variance ((Σd²)²/Σd⁴), which is about the number of heavy terms when they make
    # all of it (at least 2 for a finite interval width).
    carriers = float(spread.sum()) ** 2 / float((spread**2).sum())
    t = float(stats.t.ppf(1 - alpha / 2, df=max(min(ess, carriers) - 1.0, 2.0)))
    value = float(per_list.mean())
    return SlateEstimate(name, value, value - t * se, value + t * se, se, ess, n, top)


def aimed_lift(
    reward: ArrayLike,
    own: ArrayLike,
    champion: ArrayLike,
    *,
    share: float,
    alpha: float = 0.05,
    reward_max: float = 1.0,
) -> SlateEstimate:
    """Candidate minus champion in reward per list, from lists served by aimed exploration.

    ``reward`` is each served list's reward; ``own`` marks the lists that were the candidate's
    (chosen with probability ``share``), ``champion`` those that were the champion's; lists of
    neither (another candidate's) count only as requests. Each branch is a random subsample of
    the same requests, so the difference of the branch means is the lift (the self-normalised
    whole-list IPS of each branch). The interval is anytime-valid: ``std`` (the two-sample
    standard error) times :func:`anytime_multiplier` of the number of lists; each branch's
    variance counts two pseudo-lists, one without reward and one at ``reward_max``, so a handful
    of lists that happen to agree does not look certain. ``ess`` is the number of the
    candidate's own lists (the Kish ESS of the list weights).
    """
    r = np.asarray(reward, dtype=np.float64)
    mine, theirs = np.asarray(own, dtype=bool), np.asarray(champion, dtype=bool)
    if r.ndim != 1 or mine.shape != r.shape or theirs.shape != r.shape:
        raise ValidationError("reward, own and champion must be 1-D of equal length", field="own")
    if (mine & theirs).any():
        raise ValidationError("a list is either the candidate's or the champion's", field="own")
    if not np.isfinite(r).all():
        raise ValidationError("reward contains NaN or infinite values", field="reward")
    if not 0 < share < 1:
        raise ValidationError("share must lie in (0, 1)", field="share")
    if mine.sum() < 1 or theirs.sum() < 1:
        raise ValidationError("both branches need at least one list", field="own")
    bound = max(float(reward_max), float(np.abs(r).max()))
    value = float(r[mine].mean() - r[theirs].mean())
    std = float(np.sqrt(_branch_variance(r[mine], bound) + _branch_variance(r[theirs], bound)))
    half = std * anytime_multiplier(r.size, alpha)
    n_own = int(mine.sum())
    return SlateEstimate("aimed", value, value - half, value + half, std, n_own, r.size, 1 / share)


def _branch_variance(values: FloatArray, bound: float) -> float:
    """Variance of a branch mean, with a reward-free and a full-reward pseudo-list."""
    padded = np.append(values, [0.0, bound])
    return float(padded.var(ddof=1)) / values.size


def anytime_multiplier(lists: int, alpha: float = 0.05, tightest_at: int = TIGHTEST_AT) -> float:
    """Half-width over standard error of a two-sided (1 - α) asymptotic confidence sequence after
    ``lists`` lists: the normal-mixture boundary of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas
    (2024, time-uniform central limit theory), σ̂·√(2(tρ² + 1)/(t²ρ²)·log(√(tρ² + 1)/α)) with
    σ̂ = std·√t, and ρ² tuned to be narrowest at ``tightest_at`` lists. The interval then covers
    at every look at once with probability about 1 - α, however often the gate looks: 3.0
    standard errors at 2 000 lists, where one look would take 1.96."""
    if lists < 1:
        raise ValidationError("lists must be at least 1", field="lists")
    if not 0 < alpha < 1:
        raise ValidationError("alpha must lie in (0, 1)", field="alpha")
    a = -2 * np.log(alpha)
    rho2 = (a + np.log(a + 1)) / tightest_at
    x = lists * rho2
    return float(np.sqrt(2 * (x + 1) / (lists * rho2) * np.log(np.sqrt(x + 1) / alpha)))


def lists_for_half_width(
    std: float, lists: int, half_width: float, alpha: float = 0.05
) -> float | None:
    """Lists at which an estimate with standard error ``std`` after ``lists`` lists (shrinking
    as 1/√lists) gets an anytime half-width of at most ``half_width``; None if never."""
    sigma = std * np.sqrt(lists)

    def width(n: float) -> float:
        return sigma / np.sqrt(n) * anytime_multiplier(max(int(n), 1), alpha)

    if half_width <= 0 or not np.isfinite(sigma):
        return None
    if width(lists) <= half_width:
        return float(lists)
    low, high = float(lists), float(lists)
    while width(high) > half_width:
        low, high = high, high * 2
        if high > 1e15:
            return None
    while high - low > max(1.0, 1e-3 * low):
        mid = (low + high) / 2
        low, high = (low, mid) if width(mid) <= half_width else (mid, high)
    return high


def _grid(value: ArrayLike, field: str, shape: tuple[int, ...] | None) -> FloatArray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numeric", field=field) from exc
    if array.ndim != 2 or array.size == 0:
        raise ValidationError(f"{field} must be a non-empty (lists, k) array", field=field)
    if shape is not None and array.shape != shape:
        raise ValidationError(f"{field} has shape {array.shape}, reward {shape}", field=field)
    if not np.isfinite(array).all():
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    return array


def _probability(value: ArrayLike, field: str, shape: tuple[int, ...]) -> FloatArray:
    array = _grid(value, field, shape)
    if (array < 0).any() or (array > 1 + 1e-9).any():
        raise ValidationError(f"{field} must lie in [0, 1]", field=field)
    return array
