"""The choice model: position bias, a real no-click option, unexamined items never picked."""

from __future__ import annotations

import numpy as np

from dataflywheel.simulate.choice import ChoiceModel


def pick_rates(model: ChoiceModel, appeal: np.ndarray, draws: int = 20_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    counts = np.zeros(appeal.size + 1)
    for _ in range(draws):
        position = model.choose(appeal, rng)
        counts[appeal.size if position is None else position] += 1
    return counts / draws


def test_examination_decreases_with_position() -> None:
    seen = ChoiceModel().examination(10)
    assert seen[0] == 1.0
    assert np.all(np.diff(seen) < 0)


def test_the_same_item_is_picked_more_often_near_the_top() -> None:
    model = ChoiceModel()
    appeal = np.zeros(10)
    rates = pick_rates(model, appeal)
    assert rates[0] > 2 * rates[9]
    assert np.all(np.diff(rates[:10]) < 0.01)


def test_unappealing_lists_are_mostly_ignored() -> None:
    model = ChoiceModel()
    poor = pick_rates(model, np.full(10, -2.0))[-1]
    good = pick_rates(model, np.full(10, 2.0))[-1]
    assert poor > 0.9
    assert good < 0.4


def test_probabilities_leave_room_for_no_click_and_skip_unexamined_items() -> None:
    model = ChoiceModel()
    examined = np.array([True, False, True])
    probs = model.probabilities(np.array([1.0, 5.0, 1.0]), examined)
    assert probs[1] == 0.0
    assert probs[0] == probs[2]
    assert 0.0 < probs.sum() < 1.0
