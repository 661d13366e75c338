"""ε-greedy with its budget spent where an explored slot teaches most and costs least.

``aimed_epsilon`` explores the same expected share ε of the slots as ``epsilon_greedy`` but:

- **positions**: the first ``top`` positions (at most k − 1) are always the model's; below
  them, position j is explored with a probability that grows linearly toward the bottom of the
  list (a slot there is seen less, so giving it away costs less);
- **items**: an explored slot shows one of the items the model ranks just below the list (the
  ``pool`` × (k − top) next ones; the nearest misses go to the lowest positions), not a uniform
  draw from the whole catalogue: those are the items whose order against the list is least
  certain; among them, items with few interactions (``counts``, e.g. positive interactions in
  the champion's snapshot; new items have none) are drawn more often, with weight
  (1 + count)^(−novelty), as the uncertainty of a rate estimated from n observations shrinks
  like 1/√n;
- **users**: a user whose scores hardly fall past the list (the cut is arbitrary, the next
  items are nearly as good) explores more, up to (1 + adapt)×; one whose scores drop off a
  cliff after it explores less, down to (1 − adapt)×; scores that fall with the logarithm of
  the rank, the usual shape, keep ε. The multiplier depends on the user's scores only, so it is
  part of the policy.

Every window item can appear only at its own position, so the logged propensity of an item at
its position is exact and is also its probability of being in the list: 1 for the top
positions, 1 − π_j for the model's item at a lower position j, π_j × w_i / Σw for explored item
i. :meth:`AimedEpsilon.position_marginals` gives the same numbers for every candidate in closed
form. While shadow candidates are evaluated (``shadow: true``) the whole ε goes to their lists
instead, as for ``epsilon_greedy`` (:class:`~dataflywheel.serve.exploration.ShadowExplore`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataflywheel.errors import ValidationError
from dataflywheel.serve.exploration import (
    EpsilonGreedy,
    FloatArray,
    IntArray,
    _top,
)

__all__ = ["AimedEpsilon", "CandidateCounts", "Plan", "candidate_counts"]


@dataclass(frozen=True)
class Plan:
    """One user's exploration plan: the model's top k, and for each window item (the items
    ranked just below the list) the position it may take and its probability of taking it."""

    greedy: IntArray
    explore: FloatArray
    """π_j: probability that position j shows an explored item (0 for the top positions)."""
    window: IntArray
    slot: IntArray
    """The position each window item may take."""
    chance: FloatArray
    """P(window item at its position) = π_slot × its share of the slot's pool."""
    members: tuple[IntArray, ...]
    """For each position, the window items that may take it."""
    uncertainty: float


@dataclass(frozen=True)
class AimedEpsilon(EpsilonGreedy):
    """ε-greedy at lower positions over near-miss and little-known items (module docstring)."""

    epsilon: float = 0.05
    shadow: bool = True
    top: int = 3
    pool: int = 5
    novelty: float = 0.5
    adapt: float = 0.5
    name = "aimed_epsilon"
    uses_counts = True

    def __post_init__(self) -> None:
        for key, low in (("top", 0), ("pool", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValidationError(f"{key} must be an integer of at least {low}", field=key)
        for key, high in (("novelty", math.inf), ("adapt", 1.0)):
            value = getattr(self, key)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0.0 <= value <= high
            ):
                raise ValidationError(f"{key} must be a number in [0, {high:g}]", field=key)

    def _draw(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator,
        counts: ArrayLike | None = None,
    ) -> tuple[IntArray, FloatArray, FloatArray | None]:
        checked = _counts(counts, scores.size)
        frame = self._frame(scores, k)
        chosen, explore = frame.greedy, frame.explore
        propensities = 1.0 - explore
        explored = np.flatnonzero(rng.random(k) < explore)
        if explored.size:  # most lists explore no slot: the window's chances only then
            chance = self._chance(frame, checked)
            chosen = chosen.copy()
            for j in explored:
                members = frame.members[j]
                share = chance[members] / explore[j]
                at = np.searchsorted(np.cumsum(share), rng.random() * share.sum(), side="right")
                pick = members[min(int(at), members.size - 1)]
                chosen[j] = frame.window[pick]
                propensities[j] = chance[pick]
        return chosen, propensities, propensities.copy()

    def position_marginals(
        self,
        scores: FloatArray,
        k: int,
        rng: np.random.Generator | None = None,
        counts: ArrayLike | None = None,
    ) -> FloatArray:
        """P(candidate at position j), closed form: what :meth:`rank` draws with the same
        ``counts``."""
        values = np.asarray(scores, dtype=np.float64)
        k = min(k, values.size)
        plan = self.plan(values, k, _counts(counts, values.size))
        out = np.zeros((values.size, k))
        out[plan.greedy, np.arange(k)] = 1.0 - plan.explore
        out[plan.window, plan.slot] = plan.chance
        return out

    def plan(self, scores: FloatArray, k: int, counts: FloatArray | CandidateCounts | None) -> Plan:
        """Where and what this user's list may explore, with the probabilities (1 ≤ k ≤ n)."""
        frame = self._frame(scores, k)
        return Plan(*frame[:4], self._chance(frame, counts), *frame[4:])

    def _frame(self, scores: FloatArray, k: int) -> _Frame:
        """The plan without the window items' chances, which only an explored slot needs."""
        first = min(self.top, k - 1)  # a short list keeps its last position to explore
        lower = k - first
        width = min(self.pool * lower, scores.size - k)
        order = _top(scores, min(scores.size, max(k + width, 2 * k)))
        greedy, window = order[:k], order[k : k + width]
        uncertainty = _uncertainty(scores[order], k)
        if not (lower and width and self.epsilon > 0):
            none = np.zeros(0, dtype=np.int64)
            return _Frame(greedy, np.zeros(k), none, none, (), uncertainty)
        slot, share, members = _layout(k, first, width)
        expected = self.epsilon * k * (1.0 + self.adapt * (2.0 * uncertainty - 1.0))
        explore = np.minimum(share * expected, 1.0)
        return _Frame(greedy, explore, window, slot, members, uncertainty)

    def _chance(self, frame: _Frame, counts: FloatArray | CandidateCounts | None) -> FloatArray:
        """P(window item at its position) = π_slot × its weight's share of the slot's pool."""
        if not frame.window.size:
            return np.zeros(0)
        if counts is None:
            weight = np.ones(frame.window.size)
        else:
            weight = (1.0 + np.maximum(counts[frame.window], 0.0)) ** -float(self.novelty)
        pooled = np.bincount(frame.slot, weights=weight, minlength=frame.explore.size)
        return frame.explore[frame.slot] * weight / pooled[frame.slot]


class _Frame(NamedTuple):
    greedy: IntArray
    explore: FloatArray
    window: IntArray
    slot: IntArray
    members: tuple[IntArray, ...]
    uncertainty: float


@lru_cache(maxsize=256)
def _layout(k: int, first: int, width: int) -> tuple[IntArray, FloatArray, tuple[IntArray, ...]]:
    """Where each window rank may go, each position's share of the explored slots (a ramp
    over the lower positions, summing to 1), and each position's window ranks: the same for
    every request of these sizes, so built once (read-only)."""
    lower = k - first
    # Window rank q takes position k-1-(q mod lower): the nearest misses go lowest.
    slot = k - 1 - np.arange(width) % lower
    used = np.unique(slot)
    ramp = np.zeros(k)
    ramp[used] = used - first + 1.0
    share = ramp / ramp.sum()
    members = tuple(np.flatnonzero(slot == j) for j in range(k))
    for array in (slot, share, *members):
        array.flags.writeable = False
    return slot, share, members


def _uncertainty(ranked: FloatArray, k: int) -> float:
    """How arbitrary the list's cut is, in [0, 1]: the scores' drop over the list's lower half
    (rank k/2 to k) against their drop over as many ranks again below it (k to 2k). 0.5 when
    both are equal, as when scores fall with the logarithm of the rank (the usual shape); 1 when
    flat below the list; 0 at a cliff after it."""
    if k < 2 or ranked.size <= k:
        return 0.5
    # Python floats: numpy scalar arithmetic costs more than the rest of this function.
    cut = float(ranked[k - 1])
    inside = float(ranked[(k + 1) // 2 - 1]) - cut
    outside = cut - float(ranked[min(2 * k, ranked.size) - 1])
    total = inside + outside
    if not (math.isfinite(total) and total > 0):
        return 0.5
    return inside / total


def _counts(counts: ArrayLike | None, size: int) -> FloatArray | CandidateCounts | None:
    if counts is None:
        return None
    if isinstance(counts, CandidateCounts):
        if len(counts) != size:
            raise ValidationError("counts must be one number per candidate", field="counts")
        return counts
    values = np.asarray(counts, dtype=np.float64)
    if values.shape != (size,) or not np.isfinite(values).all():
        raise ValidationError("counts must be one finite number per candidate", field="counts")
    return values  # negative counts read as 0 (plan clips the few it reads)


class CandidateCounts:
    """Each candidate's count from a per-item array, read lazily: :class:`AimedEpsilon` reads
    only the items just below the list, not all the candidates (thousands, on every request).
    An array-like: ``np.asarray`` gives every candidate's count."""

    def __init__(self, per_item: FloatArray, candidates: IntArray) -> None:
        self.per_item, self.candidates = per_item, candidates

    def __len__(self) -> int:
        return int(self.candidates.size)

    def __getitem__(self, at: IntArray) -> FloatArray:
        return candidate_counts(self.per_item, self.candidates[at])

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> FloatArray:
        out = candidate_counts(self.per_item, self.candidates)
        return out if dtype is None else out.astype(dtype)


def candidate_counts(per_item: NDArray[Any], candidates: IntArray) -> FloatArray:
    """Each candidate's count from a per-item array (items beyond it, i.e. newer: 0)."""
    if not (per_item.size and candidates.size):
        return np.zeros(candidates.size)
    out = per_item.take(candidates, mode="clip").astype(np.float64, copy=False)
    if candidates.max() >= per_item.size:  # one reduction; the mask only when there are new items
        out[candidates >= per_item.size] = 0.0
    return out
