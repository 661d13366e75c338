"""Synthetic users and items with ground-truth preferences (latent factors + item quality).

The true utility of item ``i`` for user ``u`` is ``scale · θ_u·φ_i + quality_i`` plus a novelty
bonus that fades with the item's age. Items also carry ``bait``: extra click appeal that does not
make them any better once consumed (a misleading thumbnail), so a model trained on clicks alone
learns the wrong thing. Items are released over time (``release_day``), users are drawn from a
pool of taste vectors, so newcomers resemble the people already there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Population", "generate_population"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

# How strongly taste (vs item quality) drives utility, and the novelty bonus of a new item.
AFFINITY_SCALE = 1.5
NOVELTY = 0.8
NOVELTY_DAYS = 20.0
# Share of the catalogue released during the simulation rather than before it.
LATE_SHARE = 0.3
NEWCOMER_NOISE = 0.15


@dataclass
class Population:
    """Ground truth: taste vectors of the user pool, item factors, quality, bait and release day."""

    user_pool: FloatArray
    item_factors: FloatArray
    quality: FloatArray
    bait: FloatArray
    release_day: IntArray
    item_ids: list[str]
    categories: list[str]

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    def draw_users(self, n: int, rng: np.random.Generator) -> FloatArray:
        """Taste vectors of ``n`` new users: pool members with a little individual noise."""
        rows = rng.integers(0, len(self.user_pool), size=n)
        noise = rng.normal(0.0, NEWCOMER_NOISE, size=(n, self.user_pool.shape[1]))
        return np.asarray(self.user_pool[rows] + noise, dtype=np.float64)

    def utility(self, tastes: FloatArray, day: int) -> FloatArray:
        """True utility of every item for each taste vector (rows) on ``day``; unreleased = -inf."""
        age = day - self.release_day
        novelty = NOVELTY * np.exp(-np.clip(age, 0, None) / NOVELTY_DAYS)
        base = AFFINITY_SCALE * np.atleast_2d(tastes) @ self.item_factors.T
        values = base + self.quality + novelty
        return np.where(age >= 0, values, -np.inf)

    def released(self, day: int) -> IntArray:
        """Indices of the items available on ``day``."""
        return np.flatnonzero(self.release_day <= day).astype(np.int64)


def category_of(factors: FloatArray) -> list[str]:
    """Each item's category: the latent dimension it loads on most (genre-like, for filters)."""
    return [f"genre-{int(d)}" for d in np.argmax(factors, axis=1)]


def release_days(n_items: int, days: int, order: IntArray, rng: np.random.Generator) -> IntArray:
    """Release day of each item: the first ``1 - LATE_SHARE`` (in ``order``) before day 1, spread
    over the previous two months; the rest one batch per day during the simulation."""
    release = np.empty(n_items, dtype=np.int64)
    n_late = round(LATE_SHARE * n_items) if days > 1 else 0
    early, late = order[: n_items - n_late], order[n_items - n_late :]
    release[early] = -rng.integers(0, 60, size=early.size)
    release[late] = 1 + (np.arange(late.size) * days) // max(late.size, 1)
    return release


def generate_population(
    n_users: int, n_items: int, days: int, rng: np.random.Generator, dim: int = 8
) -> Population:
    """A population with clustered tastes, Zipf-sized genres, a quality spread and some bait."""
    genre_share = 1.0 / np.arange(1, dim + 1) ** 0.8
    genre_share /= genre_share.sum()
    pool_size = max(5 * n_users, 500)
    user_genre = rng.choice(dim, size=pool_size, p=genre_share)
    user_pool = rng.normal(0.0, 0.3, size=(pool_size, dim))
    user_pool[np.arange(pool_size), user_genre] += 1.0
    item_genre = rng.choice(dim, size=n_items, p=genre_share)
    item_factors = rng.normal(0.0, 0.3, size=(n_items, dim))
    item_factors[np.arange(n_items), item_genre] += 1.0
    quality = rng.normal(-0.3, 0.6, size=n_items)
    is_bait = rng.random(n_items) < 0.15
    bait = np.where(is_bait, rng.uniform(1.0, 2.0, size=n_items), 0.0)
    quality[is_bait] -= 0.8
    return Population(
        user_pool=user_pool,
        item_factors=item_factors,
        quality=quality,
        bait=bait,
        release_day=release_days(n_items, days, rng.permutation(n_items), rng),
        item_ids=[f"i{i}" for i in range(n_items)],
        categories=category_of(item_factors),
    )
