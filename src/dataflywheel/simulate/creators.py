"""User-generated content: creators among the users upload items every day (the ``ugc`` scenario).

A share of the first users are creators. Each day a creator uploads a Poisson number of items,
more when engaged; engagement is an exponential average of the clicks their items got (and the
creator's own satisfaction as a user), so creators whose items are found upload more. An item's
latent vector is its creator's taste plus noise; its observable content is derived from that
vector: ``categories`` are the names of its two strongest latent dimensions, the title and
description are topic words drawn with probabilities that follow the vector. Every item (the
initial catalogue too) is upserted with that content, as a product would, so content cold start
can score it before anyone clicked it.

The catalogue's arrays are allocated up front for the most items the run can upload (release day
``NEVER`` until uploaded), so the day's utility matrix stays one vectorised product.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataflywheel.simulate.population import Population

__all__ = ["NEVER", "TOPICS", "Creators", "generate_ugc_population"]

NEVER = 1 << 40
CREATOR_SHARE = 0.05
# Uploads per creator-day: BASE_RATE + ENGAGED_RATE · engagement (Poisson).
BASE_RATE = 0.15
ENGAGED_RATE = 1.6
MAX_UPLOADS = 6
ENGAGEMENT_MEMORY = 0.7
CLICKS_FOR_FULL_ENGAGEMENT = 5.0
ITEM_NOISE = 0.35
TITLE_WORDS = 4
DESCRIPTION_WORDS = 10
# Topic names (categories) and their words, one per latent dimension.
TOPICS: dict[str, tuple[str, ...]] = {
    "cooking": ("recipe", "kitchen", "pasta", "bake", "spicy", "dinner", "vegan", "grill"),
    "travel": ("island", "trip", "hostel", "beach", "mountain", "roadtrip", "city", "flight"),
    "music": ("guitar", "cover", "beat", "piano", "live", "remix", "vocal", "drums"),
    "gaming": ("speedrun", "boss", "level", "stream", "quest", "pixel", "arena", "loot"),
    "fitness": ("workout", "squat", "yoga", "cardio", "stretch", "marathon", "gym", "protein"),
    "comedy": ("prank", "sketch", "parody", "standup", "blooper", "skit", "roast", "meme"),
    "science": ("physics", "space", "chemistry", "robot", "experiment", "planet", "lab", "atom"),
    "fashion": ("outfit", "haul", "sneaker", "vintage", "style", "makeup", "thrift", "denim"),
}
TOPIC_NAMES = tuple(TOPICS)


def generate_ugc_population(
    n_users: int, n_items: int, days: int, rng: np.random.Generator
) -> Population:
    """A catalogue of ``n_items`` released before day 1, plus room for every upload the run can
    make (``n_users`` sets the number of creators)."""
    dim = len(TOPICS)
    genre_share = 1.0 / np.arange(1, dim + 1) ** 0.8
    genre_share /= genre_share.sum()
    pool_size = max(5 * n_users, 500)
    user_pool = rng.normal(0.0, 0.3, size=(pool_size, dim))
    user_pool[np.arange(pool_size), rng.choice(dim, size=pool_size, p=genre_share)] += 1.0
    capacity = n_items + n_creators(n_users) * days * MAX_UPLOADS
    factors = np.zeros((capacity, dim))
    factors[:n_items] = rng.normal(0.0, 0.3, size=(n_items, dim))
    factors[np.arange(n_items), rng.choice(dim, size=n_items, p=genre_share)] += 1.0
    quality = np.zeros(capacity)
    bait = np.zeros(capacity)
    quality[:n_items], bait[:n_items] = _quality_and_bait(n_items, rng)
    release = np.full(capacity, NEVER, dtype=np.int64)
    release[:n_items] = -rng.integers(0, 60, size=n_items)
    population = Population(
        user_pool=user_pool,
        item_factors=factors,
        quality=quality,
        bait=bait,
        release_day=release,
        item_ids=[f"i{i}" for i in range(capacity)],
        categories=[""] * capacity,
    )
    return population


def n_creators(n_users: int) -> int:
    return max(1, round(CREATOR_SHARE * n_users))


def _quality_and_bait(
    n: int, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    quality = rng.normal(-0.3, 0.6, size=n)
    is_bait = rng.random(n) < 0.1
    bait = np.where(is_bait, rng.uniform(1.0, 2.0, size=n), 0.0)
    quality[is_bait] -= 0.8
    return quality, bait


def content_of(factors: NDArray[np.float64], rng: np.random.Generator) -> dict[str, Any]:
    """Observable content of an item with latent ``factors``: two categories, title, description."""
    top = np.argsort(-factors, kind="stable")[:2]
    weights = np.exp(3.0 * (factors - factors.max()))
    topics = rng.choice(
        len(TOPIC_NAMES), size=TITLE_WORDS + DESCRIPTION_WORDS, p=weights / weights.sum()
    )
    words = [TOPICS[TOPIC_NAMES[t]][int(rng.integers(0, 8))] for t in topics]
    return {
        "categories": [TOPIC_NAMES[int(d)] for d in top],
        "attributes": {
            "title": " ".join(words[:TITLE_WORDS]),
            "description": " ".join(words[TITLE_WORDS:]),
        },
    }


@dataclass
class Creator:
    user_id: str
    taste: NDArray[np.float64]
    engagement: float = 0.3
    clicks_today: int = 0
    uploads: int = 0


@dataclass
class Creators:
    """The creators of a run and the next free slot of the catalogue's arrays."""

    population: Population
    next_item: int
    rng: np.random.Generator
    # False: upserts carry no categories, title or description (only ``creator_id``), to measure
    # what content is worth; the draws stay the same.
    content: bool = True
    creators: list[Creator] = field(default_factory=list)
    owner: dict[int, Creator] = field(default_factory=dict)

    def enlist(self, users: list[tuple[str, NDArray[np.float64]]]) -> None:
        """Make these users (id, taste) creators."""
        self.creators.extend(Creator(user_id, taste) for user_id, taste in users)

    def initial_items(self, day_start: float) -> list[dict[str, Any]]:
        """The catalogue before day 1 (no creator), with content, as upserts."""
        pop = self.population
        return [
            {
                "id": pop.item_ids[i],
                "created_at": day_start + (int(pop.release_day[i]) - 1) * 86_400.0,
                **self._observable(content_of(pop.item_factors[i], self.rng)),
            }
            for i in range(self.next_item)
        ]

    def upload(
        self, day: int, day_start: float, satisfaction: dict[str, float]
    ) -> list[dict[str, Any]]:
        """Today's uploads (as upserts); ``satisfaction`` of creators still active (others
        upload nothing). Uploads land at the start of the day, before the first visit."""
        pop, rng = self.population, self.rng
        items: list[dict[str, Any]] = []
        for creator in self.creators:
            felt = min(1.0, creator.clicks_today / CLICKS_FOR_FULL_ENGAGEMENT)
            creator.engagement = (
                ENGAGEMENT_MEMORY * creator.engagement + (1.0 - ENGAGEMENT_MEMORY) * felt
            )
            creator.clicks_today = 0
            if creator.user_id not in satisfaction:
                continue
            rate = (
                BASE_RATE + ENGAGED_RATE * (creator.engagement + satisfaction[creator.user_id]) / 2
            )
            count = min(int(rng.poisson(rate)), MAX_UPLOADS)
            for _ in range(count):
                i = self.next_item
                if i >= pop.n_items:
                    return items
                self.next_item += 1
                dim = creator.taste.size
                pop.item_factors[i] = creator.taste + rng.normal(0.0, ITEM_NOISE, size=dim)
                q, b = _quality_and_bait(1, rng)
                pop.quality[i], pop.bait[i] = q[0] + 0.1 * creator.engagement, b[0]
                pop.release_day[i] = day
                self.owner[i] = creator
                creator.uploads += 1
                content = self._observable(content_of(pop.item_factors[i], rng))
                content.setdefault("attributes", {})["creator_id"] = creator.user_id
                items.append({"id": pop.item_ids[i], "created_at": day_start, **content})
        return items

    def _observable(self, content: dict[str, Any]) -> dict[str, Any]:
        return content if self.content else {}

    def clicked(self, item: int) -> None:
        """A click on ``item``: its creator's engagement grows at the end of the day."""
        creator = self.owner.get(item)
        if creator is not None:
            creator.clicks_today += 1

    def summary(self) -> dict[str, Any]:
        """Supply figures of the run so far, for the simulation's summary."""
        uploads = [c.uploads for c in self.creators]
        return {
            "creators": len(uploads),
            "creators_uploading": sum(1 for n in uploads if n),
            "items_uploaded": sum(uploads),
        }
