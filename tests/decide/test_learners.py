"""Conformance suite run over every learner configuration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflywheel.decide as decide
from dataflywheel.decide import (
    FeatureHasher,
    LearnerConfig,
    Ranking,
    create_learner,
    load_learner,
    parse_request,
)
from dataflywheel.decide.linear import LinearLearner, argmax_probabilities, merge_duplicates
from dataflywheel.errors import ValidationError

CONFIGS: dict[str, dict[str, Any]] = {
    "linear-ts": {"algorithm": "linear-ts"},
    "linear-ts-full": {"algorithm": "linear-ts", "covariance": "full", "bits": 8},
    "linear-ts-softmax": {"algorithm": "linear-ts", "exploration": "softmax"},
    "linear-ucb": {"algorithm": "linear-ucb"},
    "linear-ucb-epsilon": {"algorithm": "linear-ucb", "exploration": "epsilon", "epsilon": 0.1},
    "vw-epsilon": {"algorithm": "vw"},
    "vw-squarecb": {"algorithm": "vw", "exploration": "squarecb"},
    "vw-bag": {"algorithm": "vw", "exploration": "bag"},
    "vw-cover": {"algorithm": "vw", "exploration": "cover"},
    "vw-softmax": {"algorithm": "vw", "exploration": "softmax"},
}
ACTIONS = [{"id": f"a{i}", "features": [{"shape": f"s{i}"}]} for i in range(4)]
COLORS = ["red", "green", "blue"]
BEST = {"red": 0, "green": 2, "blue": 3}  # the one rewarded action per context


def context(color: str) -> list[dict[str, Any]]:
    return [{"user": {"color": color}}]


def train(learner: decide.Learner, rounds: int, seed: int = 0) -> None:
    """The checkerboard problem: in each context exactly one action is ever rewarded."""
    rng = np.random.default_rng(seed)
    for t in range(rounds):
        color = COLORS[t % 3]
        r = learner.rank(context(color), ACTIONS, rng=rng)
        reward = float(r.chosen_index == BEST[color])
        learner.learn(context(color), ACTIONS, r.chosen_index, r.chosen_probability, reward)


@pytest.fixture(params=list(CONFIGS), ids=list(CONFIGS))
def config(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {"seed": 3, **CONFIGS[request.param]}


@pytest.fixture(scope="module")
def trained() -> dict[str, decide.Learner]:
    learners = {}
    for name, cfg in CONFIGS.items():
        learners[name] = create_learner({"seed": 3, **cfg})
        train(learners[name], 600)
    return learners


@pytest.mark.parametrize("name", list(CONFIGS))
def test_probabilities_sum_to_one_and_respect_the_floor(
    trained: dict[str, decide.Learner], name: str
) -> None:
    learner = trained[name]
    for color in COLORS:
        r = learner.rank(context(color), ACTIONS, rng=1)
        assert math.isclose(sum(r.probabilities), 1.0, abs_tol=1e-9)
        assert min(r.probabilities) >= learner.config.min_probability - 1e-12
        assert sorted(r.action_ids) == sorted(a["id"] for a in ACTIONS)
        assert r.action_ids[0] == ACTIONS[r.chosen_index]["id"] == r.chosen_id


@pytest.mark.parametrize("name", list(CONFIGS))
def test_learns_the_rewarded_action_of_each_context(
    trained: dict[str, decide.Learner], name: str
) -> None:
    learner = trained[name]
    for color, best in BEST.items():
        r = learner.rank(context(color), ACTIONS, rng=2)
        assert int(np.argmax(r.probabilities)) == best, (color, r.probabilities)
        assert r.greedy_index == best
        assert learner.best(context(color), ACTIONS) == best
    assert learner.state.learns == 600 and learner.state.ranks >= 600
    assert 0.0 < learner.state.mean_reward <= 1.0


def test_save_load_round_trip_gives_the_same_ranking(
    config: dict[str, Any], tmp_path: Path
) -> None:
    learner = create_learner(config)
    train(learner, 60)
    learner.save(tmp_path / "model")
    loaded = load_learner(tmp_path / "model")
    assert loaded.config == learner.config and loaded.state == learner.state
    for color in COLORS:
        a = learner.rank(context(color), ACTIONS)
        b = loaded.rank(context(color), ACTIONS)
        assert a.action_ids == b.action_ids and a.chosen_index == b.chosen_index
        assert np.allclose(a.probabilities, b.probabilities, atol=1e-6)


def test_same_seed_same_decisions(config: dict[str, Any]) -> None:
    def run() -> list[Ranking]:
        learner = create_learner(config)
        train(learner, 30, seed=5)
        return [learner.rank(context(c), ACTIONS) for c in COLORS * 3]

    assert run() == run()


@pytest.mark.parametrize("name", ["linear-ts", "linear-ucb", "vw-squarecb", "vw-bag"])
def test_logged_probabilities_match_empirical_choice_frequencies(
    trained: dict[str, decide.Learner], name: str
) -> None:
    learner = trained[name]
    rng = np.random.default_rng(11)
    n = 4000
    counts = np.zeros(len(ACTIONS))
    first = learner.rank(context("green"), ACTIONS, rng=rng)
    for _ in range(n):
        r = learner.rank(context("green"), ACTIONS, rng=rng)
        assert r.probabilities == first.probabilities
        counts[r.chosen_index] += 1
    p = np.array(first.probabilities)
    assert np.all(np.abs(counts / n - p) <= 4 * np.sqrt(p * (1 - p) / n) + 1e-3)


def test_thompson_quadrature_matches_monte_carlo() -> None:
    rng = np.random.default_rng(0)
    means = np.array([0.5, 0.45, 0.2, 0.48, -1.0])
    sds = np.array([0.05, 0.2, 0.3, 0.01, 0.1])
    draws = rng.normal(means, sds, size=(200_000, len(means)))
    empirical = np.bincount(draws.argmax(axis=1), minlength=len(means)) / len(draws)
    assert np.allclose(argmax_probabilities(means, sds), empirical, atol=0.01)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"algorithm": "neural"}, "algorithm"),
        ({"algorithm": "linear-ts", "exploration": "cover"}, "exploration"),
        ({"algorithm": "vw", "exploration": "thompson"}, "exploration"),
        ({"epsilon": 1.5}, "epsilon"),
        ({"epsilon": "0.2"}, "epsilon"),
        ({"bits": 30}, "bits"),
        ({"covariance": "full", "bits": 18}, "bits"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"min_probability": -0.1}, "min_probability"),
    ],
)
def test_bad_config_raises_validation_error(config: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as err:
        create_learner(config)
    assert err.value.field == field


@pytest.mark.parametrize("name", ["linear-ts", "vw-epsilon"])
def test_bad_requests_raise_validation_error(name: str) -> None:
    learner = create_learner(CONFIGS[name])
    many = [{"id": f"a{i}"} for i in range(51)]
    cases: list[tuple[Any, Any, str]] = [
        (context("red"), [], "actions"),
        (context("red"), many, "actions"),
        ([{"user": {"age": float("nan")}}], ACTIONS, "context_features[0].user.age"),
    ]
    for ctx, acts, field in cases:
        with pytest.raises(ValidationError) as err:
            learner.rank(ctx, acts)
        assert err.value.field == field
        with pytest.raises(ValidationError) as err:
            learner.learn(ctx, acts, 0, 0.5, 1.0)
        assert err.value.field == field
    for index, prob, reward, field in [(4, 0.5, 1.0, "chosen_index"), (0, 0.0, 1.0, "probability")]:
        with pytest.raises(ValidationError) as err:
            learner.learn(context("red"), ACTIONS, index, prob, reward)
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        learner.learn(context("red"), ACTIONS, 0, 0.5, float("inf"))
    assert err.value.field == "reward"


def test_config_defaults_follow_the_algorithm() -> None:
    assert LearnerConfig(algorithm="vw").exploration == "epsilon"
    assert LearnerConfig(algorithm="linear-ucb").exploration == "ucb"
    assert LearnerConfig.from_dict(LearnerConfig().to_dict()) == LearnerConfig()


def test_all_is_complete() -> None:
    public = {n for n, v in vars(decide).items() if not n.startswith("_") and callable(v)}
    assert public <= set(decide.__all__)
    assert all(hasattr(decide, n) for n in decide.__all__)


def _dense(hasher: FeatureHasher, ctx: Any, actions: Any, index: int) -> np.ndarray:
    """The served action's feature vector, built the plain way (dense, summing collisions)."""
    req = parse_request(ctx, actions)
    idx, val = hasher.outer(req.context, req.actions)
    x = np.zeros(hasher.dim)
    np.add.at(x, idx[index].ravel(), val[index].ravel())
    return x


ROUND = st.tuples(
    st.sampled_from(COLORS),
    st.floats(-3, 3, allow_nan=False),
    st.integers(0, len(ACTIONS) - 1),
    st.sampled_from([0.0, 0.5, 1.0, -1.0]),
)


@settings(max_examples=25, deadline=None)
@given(rounds=st.lists(ROUND, min_size=1, max_size=12), bits=st.integers(3, 7))
def test_full_covariance_matches_the_batch_posterior(rounds: list[Any], bits: int) -> None:
    """Rank-one updates equal the Bayesian linear regression solved from scratch, collisions
    (small ``bits``) included."""
    learner = create_learner({"algorithm": "linear-ts", "covariance": "full", "bits": bits})
    assert isinstance(learner, LinearLearner)
    cfg = learner.config
    rows, rewards = [], []
    for color, size, index, reward in rounds:
        ctx = [{"user": {"color": color, "size": size}}]
        learner.learn(ctx, ACTIONS, index, 0.5, reward)
        rows.append(_dense(learner.hasher, ctx, ACTIONS, index))
        rewards.append(reward)
    x, y = np.array(rows), np.array(rewards)
    precision = x.T @ x / cfg.noise_variance + np.eye(learner.hasher.dim) / cfg.prior_variance
    cov = np.linalg.inv(precision)
    np.testing.assert_allclose(learner.cov, cov, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        learner.mean, cov @ x.T @ y / cfg.noise_variance, rtol=1e-9, atol=1e-12
    )


@settings(max_examples=25, deadline=None)
@given(rounds=st.lists(ROUND, min_size=1, max_size=12), bits=st.integers(3, 7))
def test_diagonal_matches_the_plain_kalman_step(rounds: list[Any], bits: int) -> None:
    """The sparse update equals a dense, step-by-step diagonal Kalman filter."""
    learner = create_learner({"algorithm": "linear-ucb", "bits": bits})
    assert isinstance(learner, LinearLearner)
    noise = learner.config.noise_variance
    mean = np.zeros(learner.hasher.dim)
    var = np.full(learner.hasher.dim, learner.config.prior_variance)
    for color, size, index, reward in rounds:
        ctx = [{"user": {"color": color, "size": size}}]
        learner.learn(ctx, ACTIONS, index, 0.5, reward)
        x = _dense(learner.hasher, ctx, ACTIONS, index)
        sx = var * x
        v = noise + sx @ x
        mean = mean + sx * (reward - mean @ x) / v
        var = var - sx * sx / v
    np.testing.assert_allclose(learner.mean, mean, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(learner.var, var, rtol=1e-12, atol=1e-15)


@given(
    idx=st.lists(st.integers(0, 20), min_size=1, max_size=40),
    data=st.data(),
)
def test_merge_duplicates_sums_repeated_indices(idx: list[int], data: st.DataObject) -> None:
    val = data.draw(
        st.lists(st.sampled_from([0.0, 1.0, -1.0, 0.25, 3.0]), min_size=len(idx), max_size=len(idx))
    )
    where, x = merge_duplicates(np.array(idx, dtype=np.intp), np.array(val))
    dense = np.zeros(21)
    np.add.at(dense, idx, val)
    assert sorted(where.tolist()) == sorted({i for i, v in zip(idx, val, strict=True) if v != 0})
    rebuilt = np.zeros(21)
    rebuilt[where] = x
    np.testing.assert_allclose(rebuilt, dense, rtol=0, atol=1e-12)


def test_learning_with_the_ranking_encoding_equals_learning_from_the_request(
    config: dict[str, Any],
) -> None:
    """What the reward path reuses from the rank gives the same model as encoding anew."""
    fast, plain = create_learner(config), create_learner(config)
    rng = np.random.default_rng(0)
    for t in range(60):
        ctx = [{"user": {"color": COLORS[t % 3], "size": float(t % 7)}}]
        r = fast.rank(ctx, ACTIONS, rng=rng)
        assert r.encoding is not None
        reward = float(r.chosen_index == BEST[COLORS[t % 3]])
        fast.learn(ctx, ACTIONS, r.chosen_index, r.chosen_probability, reward, encoding=r.encoding)
        plain.learn(ctx, ACTIONS, r.chosen_index, r.chosen_probability, reward)
    for color in COLORS:
        a = fast.rank(context(color), ACTIONS, rng=1)
        b = plain.rank(context(color), ACTIONS, rng=1)
        assert a.probabilities == b.probabilities and a.action_ids == b.action_ids
    if isinstance(fast, LinearLearner) and isinstance(plain, LinearLearner):
        assert np.array_equal(fast.mean, plain.mean)


def test_an_encoding_for_another_action_or_learner_is_not_used() -> None:
    ranker, other = create_learner({"seed": 1}), create_learner({"seed": 1})
    ranking = ranker.rank(context("red"), ACTIONS, rng=0)
    wrong = (ranking.chosen_index + 1) % len(ACTIONS)
    reference = create_learner({"seed": 1})
    assert isinstance(reference, LinearLearner) and isinstance(other, LinearLearner)
    reference.learn(context("red"), ACTIONS, wrong, 0.5, 1.0)
    other.learn(context("red"), ACTIONS, wrong, 0.5, 1.0, encoding=ranking.encoding)
    assert np.array_equal(other.mean, reference.mean)
    other.learn(context("red"), ACTIONS, ranking.chosen_index, 0.5, 1.0, encoding=ranking.encoding)
    reference.learn(context("red"), ACTIONS, ranking.chosen_index, 0.5, 1.0)
    assert np.array_equal(other.mean, reference.mean)
