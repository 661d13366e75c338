"""Consumption signals at realistic rates, and engagement that follows satisfaction (or not)."""

from __future__ import annotations

from collections import Counter

import numpy as np

from dataflywheel.simulate.behaviour import Engagement, consume


def signal_rates(utility: float, draws: int = 5_000) -> tuple[Counter[str], float]:
    rng = np.random.default_rng(0)
    counts: Counter[str] = Counter()
    watched = 0.0
    for _ in range(draws):
        signals = consume(utility, rng)
        watched += signals[0][1]
        counts.update(kind for kind, _ in signals)
    return counts, watched / draws


def test_good_items_are_watched_longer_and_liked_more() -> None:
    good, good_watch = signal_rates(2.0)
    bad, bad_watch = signal_rates(-1.5)
    assert good_watch > 0.8 > 0.2 > bad_watch
    assert good["like"] > 10 * max(bad["like"], 1)
    assert bad["skip"] > 10 * max(good["skip"], 1)
    assert bad["dislike"] > good["dislike"]
    # Explicit ratings stay rare (a few percent of consumptions) whatever the item.
    assert 0.02 < good["rating"] / 5_000 < 0.1


def test_ratings_are_half_stars() -> None:
    rng = np.random.default_rng(1)
    values = {v for _ in range(3_000) for k, v in consume(0.5, rng) if k == "rating"}
    assert values <= {x / 2 for x in range(1, 11)}


def test_elastic_users_respond_to_satisfaction() -> None:
    elastic = Engagement()
    assert elastic.visit_probability(0.9) > 2 * elastic.visit_probability(0.1)
    assert elastic.churn_probability(0.1) > elastic.churn_probability(0.9)
    assert elastic.continue_probability(1.0) > elastic.continue_probability(0.0)


def test_inelastic_users_do_not() -> None:
    flat = Engagement(elastic=False)
    assert flat.visit_probability(0.9) == flat.visit_probability(0.1)
    assert flat.churn_probability(0.9) == flat.churn_probability(0.1)
    assert flat.referral_probability(1.0) == flat.referral_probability(0.0)
