"""Exploration policies: logged propensities equal the empirical frequencies of what is served."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.ope import off_policy
from dataflywheel.serve.exploration import (
    Policy,
    action_dist,
    deterministic_action_dist,
    make_policy,
)

N_CANDIDATES, K, DRAWS = 8, 3, 20_000
SCORES = np.array([2.0, 1.5, 1.2, 0.9, 0.5, 0.1, -0.4, -1.0])
IDS = np.array([f"i{j}" for j in range(N_CANDIDATES)])

MARGINAL_POLICIES = [
    {"name": "greedy"},
    {"name": "epsilon_greedy", "epsilon": 0.3},
    {"name": "outside_interests", "share": 0.34, "tail": 0.5},
    {"name": "outside_interests", "positions": [1], "tail": 0.5},
]


def _draw(policy: Policy, draws: int = DRAWS) -> tuple[np.ndarray, np.ndarray]:
    """Served candidate indices (draws x k) and their logged propensities."""
    rng = np.random.default_rng(0)
    served = np.empty((draws, K), dtype=np.int64)
    props = np.empty((draws, K))
    for d in range(draws):
        ranked = policy.rank(IDS, SCORES, K, rng)
        served[d] = [int(i[1:]) for i in ranked.items]
        props[d] = ranked.propensities
    return served, props


@pytest.mark.parametrize("config", MARGINAL_POLICIES, ids=lambda c: str(c))
def test_logged_propensity_equals_empirical_frequency(config: dict) -> None:
    """Per item x position: the logged propensity is constant and matches how often it happens,
    and matches the policy's position marginals used to build action_dist."""
    policy = make_policy(config)
    served, props = _draw(policy)
    marginals = policy.position_marginals(SCORES, K)
    for pos in range(K):
        counts = np.bincount(served[:, pos], minlength=N_CANDIDATES) / DRAWS
        for item in np.unique(served[:, pos]):
            logged = props[served[:, pos] == item, pos]
            assert np.ptp(logged) < 1e-12
            expected = logged[0]
            tolerance = 4 * np.sqrt(expected * (1 - expected) / DRAWS) + 1e-9
            assert abs(counts[item] - expected) <= tolerance, (config, pos, item)
        np.testing.assert_allclose(marginals[:, pos], counts, atol=0.012)
        assert marginals[:, pos].sum() == pytest.approx(1.0)


def test_softmax_propensities_are_plackett_luce_choice_probabilities() -> None:
    """The product of logged propensities is the probability of the whole list: chi-square over
    all ordered lists, and per position conditional on the items above."""
    policy = make_policy({"name": "softmax", "temperature": 0.8})
    served, props = _draw(policy)
    lists = Counter(map(tuple, served))
    list_prob = {tuple(s): float(np.prod(p)) for s, p in zip(served, props, strict=True)}
    observed = np.array([lists[key] for key in list_prob])
    expected = np.array([list_prob[key] * DRAWS for key in list_prob])
    keep = expected >= 5
    chi2 = (((observed - expected) ** 2) / expected)[keep].sum()
    dof = int(keep.sum()) - 1
    assert chi2 < dof + 5 * np.sqrt(2 * dof)
    # position 0 is unconditional; the choice probability of a later item given its prefix
    first = np.bincount(served[:, 0], minlength=N_CANDIDATES) / DRAWS
    weights = np.exp(SCORES / 0.8)
    np.testing.assert_allclose(first, weights / weights.sum(), atol=0.01)
    prefix = served[:, 0] == 0
    second = np.bincount(served[prefix, 1], minlength=N_CANDIDATES) / prefix.sum()
    logged = {int(i): p for i, p in zip(served[prefix, 1], props[prefix, 1], strict=True)}
    for item, p in logged.items():
        assert abs(second[item] - p) < 0.02


def test_softmax_marginals_match_its_draws() -> None:
    policy = make_policy({"name": "softmax", "temperature": 0.8})
    served, _ = _draw(policy, 10_000)
    marginals = policy.position_marginals(SCORES, K, np.random.default_rng(1))
    for pos in range(K):
        freq = np.bincount(served[:, pos], minlength=N_CANDIDATES) / 10_000
        np.testing.assert_allclose(marginals[:, pos], freq, atol=0.02)


def test_outside_interest_items_come_from_the_tail() -> None:
    policy = make_policy({"name": "outside_interests", "positions": [0, 2], "tail": 0.25})
    served, props = _draw(policy, 500)
    assert set(served[:, 0]) | set(served[:, 2]) <= {6, 7}
    assert (served[:, 1] == 0).all() and np.allclose(props[:, 1], 1.0)


def test_epsilon_greedy_never_repeats_an_item() -> None:
    policy = make_policy({"name": "epsilon_greedy", "epsilon": 1.0})
    served, _ = _draw(policy, 2000)
    assert all(len(set(row)) == K for row in served)
    assert not np.isin(served, [0, 1, 2]).any()


def test_fewer_candidates_than_k() -> None:
    ranked = make_policy({"name": "softmax"}).rank(
        ["a", "b"], [1.0, 0.0], 5, np.random.default_rng()
    )
    assert sorted(ranked.items) == ["a", "b"] and ranked.propensities[-1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({}, "name"),
        ({"name": "thompson"}, "name"),
        ({"name": "epsilon_greedy", "epsilon": 1.5}, "epsilon"),
        ({"name": "epsilon_greedy", "epsilon": "0.1"}, "epsilon"),
        ({"name": "softmax", "temperature": 0}, "temperature"),
        ({"name": "softmax", "tau": 1}, "tau"),
        ({"name": "outside_interests", "tail": 0}, "tail"),
        ({"name": "outside_interests", "positions": [1, 1]}, "positions"),
    ],
)
def test_bad_configs_raise(config: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        make_policy(config)
    assert err.value.field == field


def test_action_dist_helpers_feed_off_policy() -> None:
    """Logs of an epsilon-greedy list, evaluated for a greedy candidate via action_dist."""
    rng = np.random.default_rng(0)
    n_rounds, n_items = 3000, 6
    scores = rng.normal(size=(n_rounds, n_items))
    ctr = 1 / (1 + np.exp(-scores))
    logging = make_policy({"name": "epsilon_greedy", "epsilon": 0.5})
    rows = {"reward": [], "action": [], "pscore": [], "position": [], "round": []}
    for r in range(n_rounds):
        ranked = logging.rank(np.arange(n_items), scores[r], 2, rng)
        for pos, (item, p) in enumerate(zip(ranked.items, ranked.propensities, strict=True)):
            rows["reward"].append(float(rng.random() < ctr[r, item]))
            rows["action"].append(int(item))
            rows["pscore"].append(float(p))
            rows["position"].append(pos)
            rows["round"].append(r)
    index = np.array(rows["round"])
    greedy_lists = np.argsort(-scores, axis=1)[:, :2]
    target = deterministic_action_dist(greedy_lists, n_items)
    np.testing.assert_allclose(target, action_dist(make_policy({"name": "greedy"}), scores, 2))
    truth = ctr[np.arange(n_rounds)[:, None], greedy_lists].mean()
    result = off_policy(
        reward=rows["reward"],
        action=rows["action"],
        pscore=rows["pscore"],
        position=rows["position"],
        action_dist=target[index],
        estimators=["ipw", "snipw"],
        random_state=0,
    )
    assert result["ipw"].low <= truth <= result["ipw"].high
    assert result["snipw"].value == pytest.approx(truth, abs=0.03)


def test_epsilon_greedy_with_fewer_outsiders_than_explored_slots() -> None:
    """Four candidates, three slots, ε near 1: never more replacements than outsiders."""
    policy = make_policy({"name": "epsilon_greedy", "epsilon": 0.99})
    rng = np.random.default_rng(0)
    for _ in range(200):
        ranked = policy.rank(IDS[:4], SCORES[:4], 3, rng)
        assert len(set(ranked.items.tolist())) == 3
