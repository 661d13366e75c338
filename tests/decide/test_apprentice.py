"""Apprentice mode serves the baseline and reports how far the learner agrees with it."""

from __future__ import annotations

from typing import Any

import pytest

from dataflywheel.decide import Apprentice, create_learner

ACTIONS = [{"id": f"a{i}", "features": [{"kind": f"k{i}"}]} for i in range(3)]
CONTEXT = [{"user": {"segment": "s1"}}]


@pytest.mark.parametrize("config", [{"algorithm": "linear-ts"}, {"algorithm": "vw"}])
def test_serves_the_baseline_and_agreement_rises(config: dict[str, Any]) -> None:
    learner = create_learner(config)
    # Online first: action a1 earns 0.5, the others nothing, so the learner prefers a1.
    for _ in range(300):
        r = learner.rank(CONTEXT, ACTIONS)
        reward = 0.5 if r.chosen_index == 1 else 0.0
        learner.learn(CONTEXT, ACTIONS, r.chosen_index, r.chosen_probability, reward)
    assert learner.best(CONTEXT, ACTIONS) == 1

    apprentice = Apprentice(learner, window=50)
    windows = []
    for _ in range(4):
        for _ in range(1 if not windows else 50):
            r = apprentice.rank(CONTEXT, ACTIONS)
            assert r.chosen_index == 0 and r.chosen_id == "a0"
            assert r.probabilities == (1.0, 0.0, 0.0)
            assert sorted(r.action_ids) == ["a0", "a1", "a2"]
            apprentice.learn(CONTEXT, ACTIONS, r.chosen_index, r.chosen_probability, 1.0)
        windows.append(apprentice.agreement)
    assert windows[0] == 0.0  # the first baseline reward found the learner preferring a1
    assert windows[-1] == 1.0
    assert apprentice.ready(0.8) and not Apprentice(learner).ready()
    low, high = apprentice.learner_reward_bounds
    assert low == high == apprentice.baseline_reward == 1.0
    assert learner.best(CONTEXT, ACTIONS) == 0


def test_cold_learner_without_preference_does_not_count_as_agreeing() -> None:
    apprentice = Apprentice(create_learner({"algorithm": "linear-ucb"}), window=10)
    apprentice.learn(CONTEXT, ACTIONS, 0, 1.0, 0.0)
    assert apprentice.agreement == 0.0 and apprentice.rounds == 1
    assert apprentice.learner_reward_bounds == (0.0, 1.0)
