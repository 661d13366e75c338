"""Conformance suite run over every learner configuration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dataflywheel.decide as decide
from dataflywheel.decide import LearnerConfig, Ranking, create_learner, load_learner
from dataflywheel.decide.linear import argmax_probabilities
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
