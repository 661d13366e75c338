"""Ground truth for off-policy checks: the expected reward of any list for a simulated request.

A simulated user picks at most one item of a served list (:class:`ChoiceModel`: each position is
examined independently, then one examined item or nothing is picked by a logit over appeal, the
true utility of the items not yet consumed plus their bait). With nothing picked the user
sometimes searches and takes one of their five best items; when that item is on the list, its
correction event names the list. So the expected number of (list, item) pairs with positive
feedback, what the shadow gate counts as a list's reward, is
``P(pick) + (1 - P(pick)) · SEARCH_PROBABILITY · (share of those five on the list)``: computable
for the list a candidate *would* have served as well as for the one served.

:class:`RecordingEngine` wraps an engine and keeps, for each list served while recording, the
user's true utility of every item at that moment, keyed by ``recommendation_id``.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import product
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataflywheel.errors import ValidationError
from dataflywheel.simulate.choice import ChoiceModel
from dataflywheel.simulate.engine import Engine
from dataflywheel.simulate.runner import DAY, SEARCH_PROBABILITY, Simulation

__all__ = ["RecordingEngine", "expected_reward", "pick_probability"]

FloatArray = NDArray[np.float64]
MAX_K = 12
"""The pick probability sums over all 2^k sets of examined positions."""
SEARCHED = 5


def pick_probability(choice: ChoiceModel, appeal: ArrayLike) -> FloatArray:
    """P(the user picks some item) of each list (rows) whose positions have ``appeal`` (-inf:
    an empty or unpickable position), exactly: a sum over the sets of examined positions."""
    values = np.atleast_2d(np.asarray(appeal, dtype=np.float64))
    k = values.shape[1]
    if k > MAX_K:
        raise ValidationError(f"lists of at most {MAX_K} positions", field="appeal")
    seen = choice.examination(k)
    subsets = np.array(list(product((False, True), repeat=k)), dtype=bool).reshape(-1, k)
    chance = np.where(subsets, seen, 1 - seen).prod(axis=1)
    top = np.maximum(np.max(values, axis=1, initial=-np.inf), choice.no_click_appeal)
    weights = np.exp((values - top[:, None]) / choice.temperature)
    nothing = np.exp((choice.no_click_appeal - top) / choice.temperature)
    mass = weights @ subsets.T.astype(np.float64)
    return np.asarray((mass / (mass + nothing[:, None])) @ chance, dtype=np.float64)


def expected_reward(
    choice: ChoiceModel, available: ArrayLike, bait: ArrayLike, lists: ArrayLike
) -> FloatArray:
    """Expected positive (list, item) pairs of each list: ``available`` (requests x items) is the
    true utility with consumed items at -inf, ``bait`` (items) the extra click appeal, ``lists``
    (requests x k) item indices, -1 padding a short list."""
    utility = np.atleast_2d(np.asarray(available, dtype=np.float64))
    shown = np.atleast_2d(np.asarray(lists, dtype=np.int64))
    extra = np.asarray(bait, dtype=np.float64)
    if shown.shape[0] != utility.shape[0] or extra.shape != utility.shape[1:]:
        raise ValidationError("one row of utility per list and one bait per item", field="lists")
    items = np.clip(shown, 0, None)
    rows = np.arange(utility.shape[0])[:, None]
    appeal = np.where(shown >= 0, utility[rows, items] + extra[items], -np.inf)
    picked = pick_probability(choice, appeal)
    # The search: one of the (up to) five best available items, uniformly.
    best = np.argsort(-utility, axis=1, kind="stable")[:, :SEARCHED]
    finite = np.isfinite(utility[rows, best])
    on_list = (best[:, :, None] == shown[:, None, :]).any(axis=2) & finite
    found = on_list.sum(axis=1) / np.maximum(finite.sum(axis=1), 1)
    return np.asarray(picked + (1 - picked) * SEARCH_PROBABILITY * found, dtype=np.float64)


class RecordingEngine:
    """An engine that remembers, while ``recording``, each served list's user utility."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.simulation: Simulation | None = None
        self.recording = False
        self.available: dict[str, NDArray[np.float32]] = {}

    def recommend_many(
        self, user_ids: Sequence[str], k: int, now: Sequence[float]
    ) -> list[dict[str, Any]]:
        answers = self.engine.recommend_many(user_ids, k, now)
        sim = self.simulation
        if self.recording and sim is not None:
            users = {u.user_id: u for u in sim.users}
            for user_id, at, answer in zip(user_ids, now, answers, strict=True):
                user = users[user_id]
                # The day's utility, as the simulator computes it for the day's visitors.
                day = int((at - sim.start) // DAY) + 1
                row = sim.population.utility(user.taste, day)[0]
                if user.consumed:
                    row[list(user.consumed)] = -np.inf
                self.available[answer["recommendation_id"]] = row.astype(np.float32)
        return answers

    def event_count(self) -> int:
        return self.engine.event_count()

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> None:
        self.engine.upsert_items(items)

    def track_many(self, events: Sequence[dict[str, Any]]) -> int:
        return self.engine.track_many(events)

    def train(self, now: float) -> dict[str, Any]:
        return self.engine.train(now)

    def run_loop_once(self, now: float) -> dict[str, Any]:
        return self.engine.run_loop_once(now)

    def close(self) -> None:
        self.engine.close()
