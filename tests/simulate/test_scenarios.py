"""Scenario names: each documented, unknown names refused with the list of valid ones."""

from __future__ import annotations

import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.simulate.scenarios import SCENARIOS, get_scenario

EXPECTED = {
    "flywheel",
    "staged",
    "static",
    "weak-signal",
    "no-learning",
    "imperceptible",
    "inelastic",
    "ugc",
}


def test_every_scenario_is_named_and_documented() -> None:
    assert set(SCENARIOS) == EXPECTED
    for scenario in SCENARIOS.values():
        assert len(scenario.description) > 40


def test_unknown_scenario_lists_the_valid_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        get_scenario("flywhel")
    assert caught.value.field == "scenario"
    for name in EXPECTED:
        assert name in caught.value.message


def test_weak_signal_collects_clicks_only() -> None:
    weak = get_scenario("weak-signal")
    assert weak.sends("click")
    assert not any(weak.sends(t) for t in ("watch", "like", "dislike", "rating", "correction"))
    assert get_scenario("flywheel").sends("rating")
