"""The simulator's ground truth for a list: the exact pick probability matches the choice model's
draws, and on a real simulated day the mean expected reward matches the feedback the store got."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from dataflywheel.errors import ValidationError
from dataflywheel.simulate.choice import ChoiceModel
from dataflywheel.simulate.engine import EmbeddedEngine
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.runner import SEARCH_PROBABILITY
from dataflywheel.simulate.scenarios import get_scenario
from dataflywheel.simulate.truth import RecordingEngine, expected_reward, pick_probability
from dataflywheel.store import schema


@settings(max_examples=15, deadline=None)
@given(
    appeal=st.lists(st.one_of(st.floats(-3, 5), st.just(-np.inf)), min_size=1, max_size=8),
    seed=st.integers(0, 2**31 - 1),
)
def test_pick_probability_is_the_choice_models_frequency(appeal: list[float], seed: int) -> None:
    model = ChoiceModel()
    values = np.asarray(appeal)
    rng = np.random.default_rng(seed)
    draws = 20_000
    picked = sum(model.choose(values, rng) is not None for _ in range(draws))
    p = float(pick_probability(model, values)[0])
    assert abs(picked / draws - p) <= 5 * np.sqrt(p * (1 - p) / draws) + 1e-3, (picked, p)


def test_the_search_counts_when_a_best_item_is_on_the_list() -> None:
    model = ChoiceModel()
    utility = np.array([[3.0, 2.5, 2.0, 1.5, 1.0, -1.0, -1.5, -2.0, -2.5, -np.inf]])
    bait = np.zeros(10)
    off = expected_reward(model, utility, bait, [[5, 6, 7, -1]])[0]
    assert off == pytest.approx(pick_probability(model, [[-1.0, -1.5, -2.0, -np.inf]])[0])
    # All five best on the list: a search finds one of them for sure.
    on = expected_reward(model, utility, bait, [[0, 1, 2, 3, 4]])[0]
    picked = pick_probability(model, utility[:, :5])[0]
    assert on == pytest.approx(picked + (1 - picked) * SEARCH_PROBABILITY)
    with pytest.raises(ValidationError):
        expected_reward(model, utility, bait[:3], [[0]])


def test_expected_reward_matches_the_feedback_of_a_simulated_day() -> None:
    scenario = get_scenario("no-learning")
    with open_engine(scenario, seed=5) as engine:
        assert isinstance(engine, EmbeddedEngine)
        recorder = RecordingEngine(engine)
        sim = new_simulation(recorder, scenario, days=2, users=400, seed=5)
        recorder.simulation, recorder.recording = sim, True
        sim.run_day(1)
        sim.run_day(2)
        store = engine.wheel.store
        engine.wheel.flush()
        i, e, it = schema.impressions.c, schema.events.c, schema.items.c
        types = [t for t, signal in store.settings.signals.items() if signal.weight > 0]
        with store.read() as conn:
            served = conn.execute(select(i.recommendation_id, i.item_ids)).all()
            positive = set(
                conn.execute(
                    select(e.recommendation_id, it.item_id)
                    .select_from(schema.events.join(schema.items, e.item_idx == it.idx))
                    .where(e.recommendation_id.is_not(None), e.type.in_(types))
                ).all()
            )
    served = [r for r in served if r[1]]
    assert len(served) == len(recorder.available) > 300
    observed = np.array([sum((rec, item) in positive for item in items) for rec, items in served])
    k = max(len(items) for _, items in served)
    lists = [[sim.index[x] for x in items] + [-1] * (k - len(items)) for _, items in served]
    available = np.stack([recorder.available[rec] for rec, _ in served])
    truth = expected_reward(sim.choice, available, sim.population.bait, lists)
    assert np.all((truth > 0) & (truth < 1))
    spread = observed.std(ddof=1) / np.sqrt(observed.size)
    assert abs(observed.mean() - truth.mean()) <= 4 * spread, (observed.mean(), truth.mean())
