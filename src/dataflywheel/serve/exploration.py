"""Exploration policies for ranked lists, each logging the exact propensity of what it served.

A policy turns one user's candidate scores into a list of ``k`` items. ``propensities[j]`` is
the probability that the item shown at position ``j`` is shown there: the marginal probability
for ``greedy``, ``epsilon_greedy``, ``outside_interests`` and ``aimed_epsilon`` (the default,
:mod:`dataflywheel.serve.exploration_aimed`); for ``softmax`` (Plackett-Luce) the
probability of choosing it for position ``j`` given the items above it, whose product over the
list is the probability of the whole list. ``in_list`` is the marginal probability of each item
being anywhere in the list, where that has a closed form.

``action_dist`` turns a policy applied to a score matrix into the rounds x actions x positions
array that :func:`dataflywheel.evaluation.ope.off_policy` takes.

:class:`ShadowExplore` is what ``epsilon_greedy`` becomes while shadow candidates are evaluated
(``shadow: true``, the default): its ε is redirected from uniform slots to the candidates' whole
lists, so a candidate's value is estimated from lists it chose itself, at weight m / ε.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataflywheel.errors import ValidationError

__all__ = [
    "EpsilonGreedy",
    "Greedy",
    "OutsideInterests",
    "Policy",
    "RankedList",
    "ShadowExplore",
    "Softmax",
    "action_dist",
    "deterministic_action_dist",
    "make_policy",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class RankedList:
    """A served list: item ids, their model scores and the propensity of each at its position."""

    items: NDArray[Any]
    scores: FloatArray
    propensities: FloatArray
    in_list: FloatArray | None = None


SAMPLE_PER_K = 64
"""_top reads the k-th best of about this many scores per wanted item as a floor."""


def _top(scores: FloatArray, k: int) -> IntArray:
    """Indices of the ``k`` best scores, best first (lower index first among equals).

    The k-th best of a strided sample is a floor that at least k scores reach, so only the
    few at or above it are sorted: a third of a full partition's time on 10 000 candidates.
    """
    if k >= scores.size:
        return np.argsort(-scores, kind="stable")
    stride = scores.size // (SAMPLE_PER_K * k)
    if stride >= 2:
        sample = scores[::stride]
        pool = np.flatnonzero(scores >= np.partition(sample, sample.size - k)[sample.size - k])
        if pool.size >= k:  # fewer only when NaNs fill the sample
            return pool[np.argsort(-scores[pool], kind="stable")[:k]]
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


def _prepare(
    item_ids: ArrayLike, scores: ArrayLike, k: int
) -> tuple[NDArray[Any], FloatArray, int]:
    ids = np.asarray(item_ids)
    values = np.asarray(scores, dtype=np.float64)
    if ids.ndim != 1 or values.shape != ids.shape:
        raise ValidationError("item_ids and scores must be 1-D of equal length", field="scores")
    if k < 1:
        raise ValidationError("k must be at least 1", field="k")
    return ids, values, min(k, values.size)


class Policy(ABC):
    """Ranks candidates for one user and states the probability of what it served."""

    name: str
    uses_counts = False
    """Whether :meth:`rank` reads ``counts`` (only these policies need them computed)."""

    def rank(
        self,
        item_ids: ArrayLike,
        scores: ArrayLike,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> RankedList:
        """Draw a list of at most ``k`` items from the candidates, with propensities;
        ``counts`` (each candidate's interactions) only matters where ``uses_counts``."""
        ids, values, k = _prepare(item_ids, scores, k)
        if k == 0:
            empty = np.zeros(0)
            return RankedList(ids[:0], empty, empty, empty)
        chosen, propensities, in_list = self._draw(values, k, rng, counts)
        return RankedList(ids[chosen], values[chosen], propensities, in_list)

    @abstractmethod
    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        """Chosen candidate indices, their propensities and in-list probabilities (``counts``:
        each candidate's interactions, read only where ``uses_counts``)."""

    @abstractmethod
    def position_marginals(
        self, scores: FloatArray, k: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        """P(candidate at position j), shape (candidates, k): each column sums to 1."""


class Greedy(Policy):
    """The model's top k, deterministically (propensity 1): no exploration."""

    name = "greedy"

    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        return _top(scores, k), np.ones(k), np.ones(k)

    def position_marginals(
        self, scores: FloatArray, k: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        top = _top(scores, k)
        out = np.zeros((scores.size, top.size))
        out[top, np.arange(top.size)] = 1.0
        return out


@dataclass(frozen=True)
class EpsilonGreedy(Policy):
    """Top k, each slot independently replaced with probability ε by a distinct item drawn
    uniformly from the candidates outside the top k. ``shadow``: while shadow candidates are
    evaluated, spend ε on their lists instead (:class:`ShadowExplore`)."""

    epsilon: float = 0.1
    shadow: bool = True
    name = "epsilon_greedy"

    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        top = _top(scores, k)
        rest = scores.size - k
        if rest == 0:
            return top, np.ones(k), np.ones(k)
        replace = rng.random(k) < self.epsilon
        # Fewer candidates outside the top k than slots drawn for exploration (a tiny pool):
        # only the first ``rest`` of those slots can take a distinct outsider.
        replace[np.flatnonzero(replace)[rest:]] = False
        m = int(replace.sum())
        chosen = top.copy()
        if m:
            draws = rng.choice(rest, size=m, replace=False)
            excluded = np.sort(top)
            # Map draws in [0, rest) to candidate indices skipping the top-k ones.
            chosen[replace] = draws + np.searchsorted(excluded - np.arange(k), draws, side="right")
        propensities = np.where(replace, self.epsilon / rest, 1.0 - self.epsilon)
        in_list = np.where(replace, k * self.epsilon / rest, 1.0 - self.epsilon)
        return chosen, propensities, in_list

    def position_marginals(
        self, scores: FloatArray, k: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        top = _top(scores, k)
        k = top.size
        rest = scores.size - k
        out = np.full((scores.size, k), self.epsilon / rest if rest else 0.0)
        out[top, :] = 0.0
        out[top, np.arange(k)] = 1.0 - self.epsilon if rest else 1.0
        return out


@dataclass(frozen=True)
class Softmax(Policy):
    """Plackett-Luce sampling without replacement, P(i) ∝ exp(score_i / τ), via the exponential
    race (the k smallest Exp(1)/weight keys form a Plackett-Luce draw)."""

    temperature: float = 1.0
    n_samples: int = 20_000
    name = "softmax"

    def _weights(self, scores: FloatArray) -> FloatArray:
        return np.exp((scores - scores.max()) / self.temperature)

    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        weights = self._weights(scores)
        with np.errstate(divide="ignore"):
            keys = rng.standard_exponential(scores.size) / weights
        chosen = _top(-keys, k)
        picked = weights[chosen]
        outside = weights.sum() - picked.sum()
        # Remaining mass before each pick, summed from the end to avoid cancellation.
        remaining = max(outside, 0.0) + np.cumsum(picked[::-1])[::-1]
        return chosen, picked / remaining, None

    def position_marginals(
        self, scores: FloatArray, k: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        """Position 0 exactly; later positions by Monte-Carlo over ``n_samples`` lists (exact
        marginals sum over all prefixes), as OBP does for Thompson sampling."""
        weights = self._weights(scores)
        rng = rng if rng is not None else np.random.default_rng(0)
        n, k = weights.size, min(k, weights.size)
        counts = np.zeros((n, k))
        chunk = max(1, 2_000_000 // n)
        for start in range(0, self.n_samples, chunk):
            size = min(chunk, self.n_samples - start)
            with np.errstate(divide="ignore"):
                keys = rng.standard_exponential((size, n)) / weights
            part = (
                np.argpartition(keys, k - 1, axis=1)[:, :k]
                if k < n
                else np.tile(np.arange(n), (size, 1))
            )
            ranked = np.take_along_axis(part, np.argsort(np.take_along_axis(keys, part, 1), 1), 1)
            np.add.at(counts, (ranked.ravel(), np.tile(np.arange(k), size)), 1.0)
        out = counts / self.n_samples
        out[:, 0] = weights / weights.sum()
        return out


@dataclass(frozen=True)
class OutsideInterests(Policy):
    """Top items, with a share of the slots given to items drawn uniformly from the low-score
    tail (the bottom ``tail`` fraction of candidates), at fixed or uniformly random positions."""

    share: float = 0.1
    tail: float = 0.5
    positions: tuple[int, ...] | None = None
    name = "outside_interests"

    def _slots(self, k: int) -> int:
        if self.positions is not None:
            return sum(1 for p in self.positions if p < k)
        return min(k, round(self.share * k))

    def _pools(self, scores: FloatArray, k: int) -> tuple[IntArray, IntArray, int]:
        """Greedy items (best first) and the tail pool, for ``m`` outside slots."""
        n = scores.size
        m = self._slots(k)
        n_top = k - m
        cut = max(n_top, n - math.ceil(self.tail * n))
        if m == 0 or cut >= n:
            return _top(scores, k), np.zeros(0, dtype=np.int64), 0
        kth = sorted({j for j in (n_top - 1, cut - 1) if j >= 0})
        order = np.argpartition(-scores, kth) if kth else np.arange(n)
        head = order[:n_top]
        return head[np.argsort(-scores[head], kind="stable")], order[cut:], m

    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        top, pool, m = self._pools(scores, k)
        if m == 0:
            return top, np.ones(top.size), np.ones(top.size)
        m = min(m, pool.size)
        k = top.size + m
        if self.positions is not None:
            slots = np.array(sorted(p for p in self.positions if p < k)[:m], dtype=np.int64)
        else:
            slots = np.sort(rng.choice(k, size=m, replace=False))
        is_out = np.zeros(k, dtype=bool)
        is_out[slots] = True
        chosen = np.empty(k, dtype=np.int64)
        chosen[is_out] = pool[rng.choice(pool.size, size=m, replace=False)]
        chosen[~is_out] = top
        marginals = self._marginals(top.size, m, pool.size, k)
        rows = np.where(is_out, 0, np.cumsum(~is_out))
        props = marginals[rows, np.arange(k)]
        in_list = np.where(is_out, m / pool.size, 1.0)
        return chosen, props, in_list

    def _marginals(self, n_top: int, m: int, pool: int, k: int) -> FloatArray:
        """Rows: [any given tail item, greedy item 0, greedy item 1, ...]; columns: positions."""
        slots = None if self.positions is None else tuple(p for p in self.positions if p < k)[:m]
        return _outside_marginals(n_top, m, pool, k, slots)

    def position_marginals(
        self, scores: FloatArray, k: int, rng: np.random.Generator | None = None
    ) -> FloatArray:
        top, pool, m = self._pools(scores, min(k, scores.size))
        m = min(m, pool.size)
        k = top.size + m
        out = np.zeros((scores.size, k))
        marginals = self._marginals(top.size, m, max(pool.size, 1), k)
        if m:
            out[pool, :] = marginals[0]
        out[top, :] = marginals[1:]
        return out


@lru_cache(maxsize=1024)
def _outside_marginals(
    n_top: int, m: int, pool: int, k: int, slots: tuple[int, ...] | None
) -> FloatArray:
    """Position marginals of OutsideInterests (cached: they depend on sizes only). With random
    slots, greedy item r lands at position j when exactly j - r of the m uniformly chosen
    outside slots lie above j and j is not one: a hypergeometric count."""
    out = np.zeros((1 + n_top, k))
    if slots is not None:
        out[0, list(slots)] = 1.0 / pool
        free = [j for j in range(k) if j not in slots]
        out[1 + np.arange(n_top), free] = 1.0
        return out
    total = math.comb(k, m)
    out[0, :] = m / (k * pool)
    for r in range(n_top):
        for j in range(r, min(k, r + m + 1)):
            above = j - r
            out[1 + r, j] = math.comb(j, above) * math.comb(k - j - 1, m - above) / total
    return out


_POLICIES: dict[str, tuple[type[Policy], dict[str, Any]]] = {
    "greedy": (Greedy, {}),
    "epsilon_greedy": (EpsilonGreedy, {"epsilon": 0.1, "shadow": True}),
    "softmax": (Softmax, {"temperature": 1.0}),
    "outside_interests": (OutsideInterests, {"share": 0.1, "tail": 0.5, "positions": None}),
}

_AIMED_DEFAULTS: dict[str, Any] = {
    "epsilon": 0.05,
    "shadow": True,
    "top": 3,
    "pool": 5,
    "novelty": 0.5,
    "adapt": 0.5,
}
"""``aimed_epsilon`` (:mod:`dataflywheel.serve.exploration_aimed`), the serving default."""


def make_policy(config: Mapping[str, Any]) -> Policy:
    """Build a policy from ``{"name": ..., **parameters}``; bad configs raise ValidationError."""
    if not isinstance(config, Mapping) or "name" not in config:
        raise ValidationError("policy config needs a 'name'", field="name")
    # Imported here: it builds on this module's classes.
    from dataflywheel.serve.exploration_aimed import AimedEpsilon

    policies: dict[str, tuple[type[Policy], dict[str, Any]]] = {
        **_POLICIES,
        AimedEpsilon.name: (AimedEpsilon, _AIMED_DEFAULTS),
    }
    name = config["name"]
    if name not in policies:
        raise ValidationError(
            f"unknown policy {name!r}; choose from {', '.join(policies)}", field="name"
        )
    cls, defaults = policies[name]
    params = {key: value for key, value in config.items() if key != "name"}
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValidationError(
            f"unknown parameters for {name}: {sorted(unknown)}", field=min(unknown)
        )
    merged = {**defaults, **params}
    for key in ("epsilon", "share"):
        if key in merged and not _number_in(merged[key], 0.0, 1.0):
            raise ValidationError(f"{key} must be a number in [0, 1]", field=key)
    if "shadow" in merged and not isinstance(merged["shadow"], bool):
        raise ValidationError("shadow must be true or false", field="shadow")
    if "tail" in merged and not (_number_in(merged["tail"], 0.0, 1.0) and merged["tail"] > 0):
        raise ValidationError("tail must be a number in (0, 1]", field="tail")
    if "temperature" in merged and not (
        _number_in(merged["temperature"], 0.0, math.inf) and merged["temperature"] > 0
    ):
        raise ValidationError("temperature must be a positive number", field="temperature")
    if merged.get("positions") is not None:
        positions = merged["positions"]
        if (
            isinstance(positions, str)
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in positions)
            or len(set(positions)) != len(positions)
        ):
            raise ValidationError(
                "positions must be distinct non-negative integers", field="positions"
            )
        merged["positions"] = tuple(sorted(positions))
    return cls(**merged)


@dataclass(frozen=True)
class ShadowExplore:
    """ε-greedy's budget aimed at m shadow candidates: with probability ε / m each, the whole list
    is that candidate's top k; otherwise (1 - ε) the champion's top k, with no uniform slots.

    Every position of a served list logs the probability of the branch that chose the list
    (``1 - ε`` or ``ε / m``): exact whatever the lists, and all an estimator that weighs a
    candidate's own lists by ``m / ε`` needs. :meth:`position_marginals` gives the per-position
    probabilities of the mixture when every list is known.
    """

    epsilon: float
    name = "shadow_explore"

    def choose(self, versions: list[str], rng: np.random.Generator) -> str | None:
        """The candidate whose list to serve, or None for the champion's."""
        draw = rng.random()
        if not versions or draw >= self.epsilon:
            return None
        return versions[min(int(draw / self.epsilon * len(versions)), len(versions) - 1)]

    def branch(self, item_ids: ArrayLike, scores: ArrayLike, k: int, share: float) -> RankedList:
        """A branch's greedy top k, every position logged at the branch's probability."""
        ids, values, k = _prepare(item_ids, scores, k)
        top = _top(values, k) if k else np.zeros(0, dtype=np.int64)
        return RankedList(ids[top], values[top], np.full(top.size, share))

    def position_marginals(
        self, champion: ArrayLike, candidates: list[ArrayLike], n_items: int
    ) -> FloatArray:
        """P(item at position j) under the mixture, shape (n_items, k), from the champion's and
        each candidate's ranked item indices (a short list leaves its missing positions empty)."""
        lists = [np.asarray(champion, dtype=np.int64)] + [
            np.asarray(c, dtype=np.int64) for c in candidates
        ]
        k = max(lst.size for lst in lists)
        out = np.zeros((n_items, k))
        shares = [1.0 - self.epsilon] + [self.epsilon / len(candidates)] * len(candidates)
        for lst, share in zip(lists, shares, strict=True):
            out[lst, np.arange(lst.size)] += share
        return out


def _number_in(value: Any, low: float, high: float) -> bool:
    """A real number (not a bool, not NaN) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return low <= value <= high


def deterministic_action_dist(rankings: ArrayLike, n_actions: int) -> FloatArray:
    """One-hot action_dist (rounds x actions x positions) for deterministic lists of action
    indices (rounds x positions), e.g. a candidate model's top-k."""
    ranks = np.asarray(rankings, dtype=np.int64)
    if ranks.ndim != 2 or ranks.size == 0:
        raise ValidationError(
            "rankings must be a non-empty rounds x positions array", field="rankings"
        )
    if ranks.min() < 0 or ranks.max() >= n_actions:
        raise ValidationError(f"rankings must index [0, {n_actions})", field="rankings")
    n, k = ranks.shape
    out = np.zeros((n, n_actions, k))
    out[np.arange(n)[:, None], ranks, np.arange(k)[None, :]] = 1.0
    return out


def action_dist(
    policy: Policy, scores: ArrayLike, k: int, rng: np.random.Generator | None = None
) -> FloatArray:
    """The policy's position marginals for every round of a score matrix (rounds x actions):
    the evaluation policy's action_dist, with positions, for off-policy evaluation."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValidationError("scores must be a non-empty rounds x actions array", field="scores")
    k = min(k, matrix.shape[1])
    return np.stack([policy.position_marginals(row, k, rng) for row in matrix])
