"""The default exploration (``aimed_epsilon``): exact propensities against many draws, greedy
top positions, explored slots on the items just below the list (little-known ones first), more
exploration where the list's cut is arbitrary, the shadow redirect, and config errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflywheel as dfw
from dataflywheel.config import Settings
from dataflywheel.errors import ValidationError
from dataflywheel.serve.exploration import action_dist, make_policy
from dataflywheel.serve.exploration_aimed import AimedEpsilon, CandidateCounts, candidate_counts
from dataflywheel.serve.shadow import REFRESH_SECONDS
from serve.test_recommend import two_worlds


def aimed(**params: object) -> AimedEpsilon:
    policy = make_policy({"name": "aimed_epsilon", **params})
    assert isinstance(policy, AimedEpsilon)
    return policy


@settings(max_examples=12, deadline=None)
@given(
    n_items=st.integers(1, 40),
    k=st.integers(1, 8),
    top=st.integers(0, 4),
    pool=st.integers(1, 4),
    epsilon=st.floats(0.05, 0.9),
    novelty=st.floats(0.0, 2.0),
    adapt=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_logged_propensities_are_the_frequencies_and_the_closed_form_marginals(
    n_items: int,
    k: int,
    top: int,
    pool: int,
    epsilon: float,
    novelty: float,
    adapt: float,
    seed: int,
) -> None:
    """Per item x position over many draws: the logged propensity never varies, matches how
    often it happens, equals position_marginals, and is the item's in-list probability."""
    rng = np.random.default_rng(seed)
    scores = np.round(rng.normal(size=n_items), 1)  # ties included
    counts = rng.integers(0, 50, size=n_items).astype(float)
    policy = aimed(epsilon=epsilon, top=top, pool=pool, novelty=novelty, adapt=adapt)
    draws = 4_000
    k = min(k, n_items)
    seen = np.zeros((n_items, k))
    logged = np.full((n_items, k), np.nan)
    for _ in range(draws):
        ranked = policy.rank(np.arange(n_items), scores, k, rng, counts)
        assert len(set(ranked.items.tolist())) == k
        assert ranked.in_list is not None
        np.testing.assert_array_equal(ranked.in_list, ranked.propensities)
        cells = (ranked.items, np.arange(k))
        seen[cells] += 1
        before = logged[cells]
        assert np.all(np.isnan(before) | (before == ranked.propensities))
        logged[cells] = ranked.propensities
    marginals = policy.position_marginals(scores, k, counts=counts)
    np.testing.assert_allclose(marginals.sum(axis=0), 1.0)
    shown = ~np.isnan(logged)
    np.testing.assert_allclose(marginals[shown], logged[shown], rtol=1e-12)
    tolerance = 5 * np.sqrt(marginals * (1 - marginals) / draws) + 2e-3
    assert np.all(np.abs(seen / draws - marginals) <= tolerance)


def test_top_positions_stay_greedy_and_explored_items_come_from_just_below_the_list() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1_000)
    order = np.argsort(-scores)
    policy = aimed(epsilon=0.2, top=3, pool=5)
    explored_at: set[int] = set()
    for _ in range(2_000):
        ranked = policy.rank(np.arange(1_000), scores, 10, rng)
        np.testing.assert_array_equal(ranked.items[:3], order[:3])
        np.testing.assert_array_equal(ranked.propensities[:3], 1.0)
        swapped = np.flatnonzero(ranked.items != order[:10])
        assert np.all(ranked.propensities[swapped] < 0.5)
        assert np.isin(ranked.items[swapped], order[10:45]).all()  # 5 per lower position
        explored_at.update(swapped.tolist())
    assert explored_at == set(range(3, 10))
    plan = policy.plan(scores, 10, None)
    assert np.all(np.diff(plan.explore[3:]) > 0)  # lower positions explore more


def test_little_known_items_are_drawn_more_often_within_a_position() -> None:
    scores = np.linspace(1.0, 0.0, 30)
    counts = np.zeros(30)
    counts[6:26] = [0, 99, 3, 24, 8] * 4  # the window: ranks 6..25 for k = 6, top = 2, pool = 5
    for novelty in (0.5, 0.0):
        plan = aimed(top=2, pool=5, novelty=novelty).plan(scores, 6, counts)
        np.testing.assert_array_equal(plan.window, np.arange(6, 26))
        expected = (1 + counts[plan.window]) ** -novelty
        for j in range(2, 6):
            at = plan.slot == j
            ratio = plan.chance[at] / expected[at]
            np.testing.assert_allclose(ratio, ratio[0])
            assert plan.chance[at].sum() == pytest.approx(plan.explore[j])


def test_a_list_whose_cut_is_arbitrary_explores_more() -> None:
    """Scores falling with the log of the rank spend exactly ε of the slots; scores flat just
    below the list (1 + adapt) times that; a cliff after the list (1 - adapt) times."""
    policy = aimed(epsilon=0.05, adapt=0.5)
    log_rank = -np.log(np.arange(1, 101))
    flat = np.concatenate([np.linspace(2.0, 1.0, 10), np.full(90, 1.0) - np.arange(90) * 1e-9])
    cliff = np.concatenate([np.linspace(2.0, 1.9999, 10), np.linspace(0.1, 0.0, 90)])
    for scores, factor in ((log_rank, 1.0), (flat, 1.5), (cliff, 0.5)):
        plan = policy.plan(scores, 10, None)
        assert plan.explore.sum() / 10 == pytest.approx(0.05 * factor, rel=1e-3)


def test_the_default_is_aimed_exploration_of_five_percent_of_the_slots() -> None:
    policy = make_policy(Settings().exploration)
    assert isinstance(policy, AimedEpsilon) and policy.name == "aimed_epsilon"
    assert (policy.epsilon, policy.top, policy.shadow) == (0.05, 3, True)
    plan = policy.plan(-np.log(np.arange(1, 501)), 10, None)
    assert plan.explore.sum() == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"name": "aimed_epsilon", "epsilon": 1.5}, "epsilon"),
        ({"name": "aimed_epsilon", "top": -1}, "top"),
        ({"name": "aimed_epsilon", "top": 2.5}, "top"),
        ({"name": "aimed_epsilon", "pool": 0}, "pool"),
        ({"name": "aimed_epsilon", "novelty": -1}, "novelty"),
        ({"name": "aimed_epsilon", "novelty": "high"}, "novelty"),
        ({"name": "aimed_epsilon", "adapt": 1.5}, "adapt"),
        ({"name": "aimed_epsilon", "shadow": "yes"}, "shadow"),
        ({"name": "aimed_epsilon", "window": 5}, "window"),
    ],
)
def test_bad_configs_raise_naming_the_field(config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        make_policy(config)
    assert err.value.field == field


def test_counts_must_be_one_finite_number_per_candidate() -> None:
    rng = np.random.default_rng(0)
    for counts in ([1.0, 2.0], [1.0, 2.0, np.nan]):
        with pytest.raises(ValidationError) as err:
            aimed().rank(["a", "b", "c"], [3.0, 2.0, 1.0], 2, rng, counts)
        assert err.value.field == "counts"
    assert candidate_counts(np.array([5.0, 7.0]), np.array([1, 4, 0])).tolist() == [7.0, 0.0, 5.0]


def test_action_dist_takes_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(20, 60))
    policy = aimed(epsilon=0.2)
    dist = action_dist(policy, scores, 10)
    assert dist.shape == (20, 60, 10)
    np.testing.assert_allclose(dist.sum(axis=1), 1.0)
    np.testing.assert_array_equal(dist[3], policy.position_marginals(scores[3], 10))


def test_counts_read_lazily_draw_as_the_candidates_counts_do() -> None:
    per_item = np.array([0.0, 40.0, 3.0, 0.0, 9.0, 1.0, 25.0])
    candidates = np.array([0, 1, 2, 4, 5, 6, 8, 9, 11, 12, 13])  # 8 and up: newer, count 0
    lazy = CandidateCounts(per_item, candidates)
    eager = candidate_counts(per_item, candidates)
    assert np.asarray(lazy).tolist() == eager.tolist() == [0, 40, 3, 9, 1, 25, 0, 0, 0, 0, 0]
    scores = np.linspace(1.0, 0.0, candidates.size)
    policy = aimed(epsilon=0.5, top=1, pool=3)
    for seed in range(30):
        a = policy.rank(candidates, scores, 3, np.random.default_rng(seed), lazy)
        b = policy.rank(candidates, scores, 3, np.random.default_rng(seed), eager)
        assert a.items.tolist() == b.items.tolist()
        assert a.propensities.tolist() == b.propensities.tolist()
    np.testing.assert_array_equal(
        policy.position_marginals(scores, 3, counts=lazy),
        policy.position_marginals(scores, 3, counts=eager),
    )
    with pytest.raises(ValidationError) as err:
        policy.rank(candidates[:-1], scores[:-1], 3, np.random.default_rng(0), lazy)
    assert err.value.field == "counts"


def test_the_engine_serves_aimed_lists_and_spends_epsilon_on_a_shadow_while_there_is_one(
    store_url: str,
) -> None:
    with dfw.open(store_url, seed=0) as wheel:
        two_worlds(wheel)
        assert wheel.train("itemknn", budget=5)["status"] == "champion"
        answers = [wheel.recommend("u0", 10) for _ in range(300)]
        assert {a["policy"] for a in answers} == {"aimed_epsilon"}
        heads = {tuple(i["item_id"] for i in a["items"][:3]) for a in answers}
        assert len(heads) == 1  # the top 3 never move
        props = np.array([[i["propensity"] for i in a["items"]] for a in answers])
        assert np.all(props[:, :3] == 1.0)
        explored = props < 0.5
        assert 0.01 < explored.mean() < 0.1 and not explored[:, :3].any()

        candidate = wheel.train("popularity", budget=5)["version"]
        wheel.registry.set_status(candidate, "shadow", "test")
        time.sleep(REFRESH_SECONDS)  # serving re-reads the shadow versions once a second
        answers = [wheel.recommend(f"u{u % 60}", 10) for u in range(600)]
        assert {a["policy"] for a in answers} == {"shadow_explore"}
        chosen = [a for a in answers if a["model_version"] == candidate]
        assert 0.01 * 600 <= len(chosen) <= 0.1 * 600
        assert {i["propensity"] for a in chosen for i in a["items"]} == {0.05}
        others = {i["propensity"] for a in answers if a not in chosen for i in a["items"]}
        assert others == {0.95}
