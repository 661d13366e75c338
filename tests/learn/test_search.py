"""Automatic search: picks the best validated trial, refits on everything, respects the budget."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.learn.models import EASE, Recommender
from dataflywheel.learn.search import SearchResult, search

N_USERS, N_ITEMS = 60, 30


def events(seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two taste groups; each user consumes 12 items of their own group over time."""
    rng = np.random.default_rng(seed)
    users, items = [], []
    for user in range(N_USERS):
        offset = (N_ITEMS // 2) * (user % 2)
        users += [user] * 12
        items += (rng.choice(N_ITEMS // 2, size=12, replace=False) + offset).tolist()
    times = np.tile(np.arange(12, dtype=float), N_USERS) * 3600.0
    return np.array(users), np.array(items), np.ones(len(users)), times


def run(budget: float, models: list[str], max_trials: int | None = None) -> SearchResult:
    u, i, w, t = events()
    return search(
        u,
        i,
        w,
        t,
        n_users=N_USERS,
        n_items=N_ITEMS,
        budget_seconds=budget,
        models=models,
        max_trials=max_trials,
    )


def test_search_returns_best_trial_refit_on_all_data() -> None:
    # By trial count, not time: a loaded machine must not leave a model out.
    result = run(60.0, ["popularity", "ease"], max_trials=2)
    names = {row["name"] for row in result.leaderboard}
    assert names == {"popularity", "ease"}
    best = max(result.leaderboard, key=lambda row: row["ndcg@10"])
    assert result.metrics["ndcg@10"] == best["ndcg@10"]
    assert result.name == "ease" and isinstance(result.model, EASE)
    assert result.model.params() == result.params
    assert result.model.n_items == N_ITEMS
    for key in ("recall@10", "ndcg@10", "map@10", "coverage", "novelty", "fit_seconds"):
        assert key in result.leaderboard[0]


def test_refit_uses_validation_events() -> None:
    """An item seen only in validation gets popularity in the refit model."""
    u, i, w, t = events()
    i = np.where(i == N_ITEMS - 1, N_ITEMS - 2, i)
    valid = np.zeros(len(u), dtype=bool)
    valid[-1] = True
    i[-1] = N_ITEMS - 1
    result = search(
        u,
        i,
        w,
        t,
        n_users=N_USERS,
        n_items=N_ITEMS,
        budget_seconds=2.0,
        valid_mask=valid,
        models=["popularity"],
    )
    assert isinstance(result.model, Recommender)
    empty_row = np.zeros((1, N_ITEMS), dtype=np.float32)
    assert result.model.score(empty_row, np.array([N_ITEMS - 1]))[0, 0] == 1.0


def test_budget_respected() -> None:
    run(1e-9, ["itemknn"])  # the first item-kNN fit in a process compiles its kernels
    start = time.monotonic()
    result = run(3.0, ["popularity", "itemknn"])
    assert time.monotonic() - start < 3.0 + 2.0
    assert len(result.leaderboard) >= 2


def test_a_budget_used_up_before_the_first_trial_still_scores_one_configuration() -> None:
    # The set-up alone can use up a small budget on a busy machine; a model must still come out.
    result = run(1e-9, ["itemknn", "popularity"])
    assert [row["trial"] for row in result.leaderboard] == [0]
    assert result.name == result.leaderboard[0]["name"]


def test_bad_arguments_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        run(1.0, ["nope"])
    assert info.value.field == "models"
    with pytest.raises(ValidationError):
        run(0.0, ["ease"])


def test_the_incumbent_is_scored_outside_the_trial_count_and_can_win() -> None:
    """Only popularity is searched; the incumbent EASE configuration beats it and is chosen."""
    u, i, w, t = events()
    incumbent = ("ease", {"l2": 50.0, "fit_binary": False, "keep": None}, {})
    result = search(
        u,
        i,
        w,
        t,
        n_users=N_USERS,
        n_items=N_ITEMS,
        budget_seconds=30.0,
        models=["popularity"],
        max_trials=1,
        incumbent=incumbent,
    )
    assert [row["trial"] for row in result.leaderboard] == ["incumbent", 0]
    assert result.incumbent is not None and result.incumbent["name"] == "ease"
    assert result.name == "ease" and result.params == incumbent[1]
    assert result.metrics["ndcg@10"] == result.incumbent["ndcg@10"]
    assert result.metrics["ndcg@10"] > result.leaderboard[1]["ndcg@10"]


def test_a_dense_ease_fit_that_would_overrun_the_budget_is_not_started() -> None:
    # 6 000 active items: a dense EASE fit inverts a 6 000² Gram matrix, seconds on any machine.
    rng = np.random.default_rng(0)
    n_users, n_items = 300, 6_000
    users = np.repeat(np.arange(n_users), 40)
    items = rng.permutation(np.resize(np.arange(n_items), users.size))
    times = np.tile(np.arange(40, dtype=float), n_users)
    started = time.monotonic()
    result = search(
        users,
        items,
        np.ones(users.size),
        times,
        n_users=n_users,
        n_items=n_items,
        budget_seconds=0.5,
        models=["ease", "popularity"],
    )
    assert time.monotonic() - started < 5.0
    assert {row["name"] for row in result.leaderboard} == {"popularity"}
    assert [(f["trial"], f["name"]) for f in result.failed] == [("planned", "ease")]
    assert "estimated" in result.failed[0]["error"]
