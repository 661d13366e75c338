"""Scenarios on the real engine: each curve differs from the full loop the way its name says.

Each scenario runs once per session (small population, embedded store) and the tests share the
results; a run takes a few seconds.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.scenarios import get_scenario

USERS, DAYS, SEED = 150, 12, 7


@cache
def run(name: str, seed: int = SEED, days: int = DAYS, users: int = USERS) -> dict[str, Any]:
    scenario = get_scenario(name)
    with open_engine(scenario, seed) as engine:
        simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
        simulation.run()
    return simulation.document(seed)


def summary(name: str) -> dict[str, Any]:
    return dict(run(name)["summary"])


def test_document_shape() -> None:
    document = run("flywheel")
    assert document["scenario"] == "flywheel"
    assert document["seed"] == SEED
    assert [d["day"] for d in document["days"]] == list(range(1, DAYS + 1))
    day = document["days"][-1]
    assert set(day) == {
        "day", "dau", "sessions", "events", "strong_events", "model_version", "quality"
    }  # fmt: skip
    assert day["sessions"] >= day["dau"] > 0
    assert document["days"][0]["model_version"] is None


def test_same_seed_same_document() -> None:
    assert run("flywheel", seed=11, days=5, users=60) == run.__wrapped__(
        "flywheel", seed=11, days=5, users=60
    )


def test_flywheel_beats_static() -> None:
    on, off = summary("flywheel"), summary("static")
    assert on["events"] > 1.1 * off["events"]
    assert on["dau_mean_last_week"] > off["dau_mean_last_week"]
    assert on["quality_last_week"] > 1.3 * off["quality_last_week"]


def test_static_keeps_one_model_version() -> None:
    assert summary("static")["model_versions"] == 1
    assert summary("flywheel")["model_versions"] > 3


def test_weak_signal_collects_no_strong_events() -> None:
    assert summary("weak-signal")["strong_events"] == 0
    assert summary("flywheel")["strong_events"] > 0.05 * summary("flywheel")["events"]


def test_no_learning_never_serves_a_model() -> None:
    assert all(day["model_version"] is None for day in run("no-learning")["days"])
    assert summary("no-learning")["events"] > 0


def test_imperceptible_serves_no_better_than_chance() -> None:
    assert (
        summary("imperceptible")["quality_last_week"]
        < 0.5 * summary("flywheel")["quality_last_week"]
    )
    # The loop keeps retraining; only serving ignores what it learned.
    assert summary("imperceptible")["model_versions"] > 1


def test_inelastic_engagement_ignores_quality() -> None:
    flat = summary("inelastic")
    # Users come back at the baseline rate whatever they are shown: no growth, no collapse.
    assert flat["dau_mean_last_week"] < 0.8 * summary("flywheel")["dau_mean_last_week"]
    assert 0.6 < flat["dau_mean_last_week"] / flat["dau_first_day"] < 1.5
