"""The content hybrid: picked by the search where the items' content predicts taste, left out
(or barely weighted) where it is noise; trained from the store's catalogue, saved with its
content vectors, and serving new items through the content cold start."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp

import dataflywheel as dfw
from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models import EASE, Hybrid, create, load_model
from dataflywheel.learn.search import search
from dataflywheel.learn.trainer import Holdout
from learn.test_models import N_ITEMS, checkerboard, content, fitted

START = 1_700_000_000.0
GROUPS, ITEMS, USERS, EVENTS = 4, 400, 160, 6
OWN_SHARE = 0.85
"""Share of a user's events on items of their own taste group (the rest: any item)."""


def group(n: int) -> int:
    return n % GROUPS


def taste(seed: int = 0) -> list[dict[str, Any]]:
    """Each user mostly consumes items of one group, popular ones more often: the
    interactions are too few for the co-occurrences to tell each item's group well."""
    rng = np.random.default_rng(seed)
    ranks = np.arange(ITEMS) // GROUPS
    events = []
    for user in range(USERS):
        own = np.flatnonzero(np.arange(ITEMS) % GROUPS == user % GROUPS)
        weights = 1.0 / (ranks[own] + 5.0)
        mine = rng.choice(own, size=EVENTS, replace=False, p=weights / weights.sum())
        others = rng.choice(ITEMS, size=EVENTS, replace=False)
        chosen = np.where(rng.random(EVENTS) < OWN_SHARE, mine, others)
        events += [
            {
                "user_id": f"u{user}",
                "item_id": f"i{item}",
                "type": "click",
                "timestamp": START + user * 1_000 + n * 10,
            }
            for n, item in enumerate(dict.fromkeys(chosen.tolist()))
        ]
    return events


def catalogue(genre: Callable[[int], int]) -> list[dict[str, Any]]:
    return [
        {"id": f"i{n}", "categories": [f"g{genre(n)}"], "attributes": {"title": f"item {n}"}}
        for n in range(ITEMS)
    ]


def trained(url: str, genre: Callable[[int], int]) -> tuple[dfw.Flywheel, dict[str, Any]]:
    """A store with the catalogue and the events, and its first model version (the enqueued
    first guesses only: every model once, recency-weighted EASE, and the hybrid over it)."""
    wheel = dfw.open(url, exploration={"name": "greedy"}, train_max_trials=8, seed=0)
    wheel.upsert_items(catalogue(genre))
    assert wheel.track_many(taste()).accepted > 0
    return wheel, wheel.train("auto", budget=120)


def test_hybrid_chosen_and_better_where_content_predicts_taste(sqlite_url: str) -> None:
    wheel, version = trained(sqlite_url, group)
    with wheel:
        assert version["name"] == "hybrid", version
        params, matrix = version["params"]["model"], version["params"]["matrix"]
        assert params["content_weight"] > 0
        holdout = Holdout.from_store(wheel.store)
        hybrid = holdout.evaluate("hybrid", params, matrix)
        base = holdout.evaluate(params["base"], params["base_params"], matrix)
        assert hybrid["ndcg@10"] > base["ndcg@10"] * 1.05, (hybrid, base)

        # Serving loads the saved hybrid and folds the user's row in.
        answer = wheel.recommend("u0", 10)
        assert answer["model_version"] == version["version"]
        in_group = [int(item["item_id"][1:]) % GROUPS == 0 for item in answer["items"]]
        assert sum(in_group) >= 8, answer
        # An item the fit never saw is scored from its content at once.
        wheel.upsert_items([{"id": "fresh", "categories": ["g0"], "attributes": {}}])
        ranked = wheel.rank("u0", ["i1", "fresh", "i2"])
        assert ranked["items"][0]["item_id"] == "fresh", ranked


def test_noise_metadata_gets_no_weight(sqlite_url: str) -> None:
    rng = np.random.default_rng(1)
    noise = rng.integers(GROUPS, size=ITEMS)
    wheel, version = trained(sqlite_url, lambda n: int(noise[n]))
    with wheel:
        params = version["params"]["model"]
        assert version["name"] != "hybrid" or params["content_weight"] <= 0.1, version


def test_hybrid_needs_metadata(sqlite_url: str) -> None:
    with dfw.open(sqlite_url) as wheel:
        wheel.track_many(taste()[:200])
        with pytest.raises(ValidationError) as error:
            wheel.train("hybrid", budget=10)
        assert error.value.field == "models"
    rows = np.repeat(np.arange(10), 3)
    cols = np.tile(np.arange(3), 10)
    for empty in (None, sp.csr_matrix((3, 4), dtype=np.float32)):
        with pytest.raises(ValidationError):
            search(
                rows,
                cols,
                np.ones(rows.size),
                np.arange(rows.size, dtype=float),
                n_users=10,
                n_items=3,
                budget_seconds=5,
                models=["hybrid"],
                content=empty,
            )


def test_without_content_the_hybrid_ranks_as_its_collaborative_part() -> None:
    matrix = checkerboard()
    hybrid = create("hybrid", base="ease", base_params={"l2": 20.0}).fit(matrix)
    ease = EASE(l2=20.0).fit(matrix)
    np.testing.assert_array_equal(hybrid.recommend(matrix, 8)[0], ease.recommend(matrix, 8)[0])


def test_weight_grid_ranks_as_each_weight_alone() -> None:
    matrix = checkerboard()
    base = EASE(l2=20.0).fit(matrix)
    weights = [0.1, 0.5, 0.9]
    blends = Hybrid.around(base, content(), 0.0).recommend_blends(
        matrix, 5, weights, exclude=matrix
    )
    for weight, ids in zip(weights, blends, strict=True):
        alone = Hybrid.around(base, content(), weight).recommend(matrix, 5)[0]
        np.testing.assert_array_equal(ids, alone)


def test_content_moves_the_ranking() -> None:
    """Content that contradicts the interactions wins once it weighs enough: user 0's items
    share their one category with three items of the other group only."""
    matrix = checkerboard()
    categories = np.arange(N_ITEMS)
    categories[np.r_[matrix[0].indices, [10, 11, 12]]] = N_ITEMS
    against = sp.csr_matrix((np.ones(N_ITEMS, np.float32), (np.arange(N_ITEMS), categories)))
    base = EASE(l2=20.0).fit(matrix)
    collab = Hybrid.around(base, against, 0.05).recommend(matrix[:1], 3)[0][0]
    contrary = Hybrid.around(base, against, 0.95).recommend(matrix[:1], 3)[0][0]
    assert (collab < 10).all() and sorted(contrary) == [10, 11, 12]


def test_artifact_needs_its_collaborative_part(tmp_path: Path) -> None:
    model = fitted("hybrid")
    model.save(tmp_path)
    assert (tmp_path / "base" / "model.json").exists()
    loaded = load_model(tmp_path)
    assert isinstance(loaded, Hybrid) and loaded.base.n_items == N_ITEMS
    for name in ("model.json", "arrays.npz"):
        (tmp_path / "base" / name).unlink()
    with pytest.raises(ModelError, match=r"model\.json"):
        load_model(tmp_path)


def test_bad_parameters_name_the_field() -> None:
    with pytest.raises(ValidationError) as base:
        create("hybrid", base="no-such-model")
    assert base.value.field == "base"
    with pytest.raises(ValidationError) as weight:
        create("hybrid", content_weight=1.5)
    assert weight.value.field == "content_weight"
    with pytest.raises(ValidationError) as params:
        create("hybrid", base="ease", base_params={"depth": 3})
    assert params.value.field == "params"
