"""The ``staged`` scenario: simulated users drive candidates through shadow mode and an
interleaving test before any promotion, on the simulated clock, reproducibly."""

from __future__ import annotations

from typing import Any

from dataflywheel.simulate.engine import EmbeddedEngine
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.scenarios import get_scenario

USERS, DAYS, SEED = 300, 10, 3


def _run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    scenario = get_scenario("staged")
    with open_engine(scenario, SEED) as engine:
        simulation = new_simulation(engine, scenario, days=DAYS, users=USERS, seed=SEED)
        simulation.run()
        assert isinstance(engine, EmbeddedEngine)
        transitions = engine.wheel.registry.transitions()
    return simulation.document(SEED), transitions


def test_candidates_pass_shadow_and_interleaving_before_promotion() -> None:
    document, transitions = _run()
    actions = document["summary"]["loop_actions"]
    assert actions["shadowing"] >= 1 and actions["experimenting"] >= 1, actions
    assert actions["promoted"] >= 2, actions  # the first model, then at least one candidate
    served = [day["model_version"] for day in document["days"]]
    assert any(v is not None and "+" in v for v in served), served  # interleaved lists
    # Every promotion after the first went through shadow and an experiment, in that order.
    for promotion in [t for t in transitions if t["to"] == "champion"][1:]:
        path = [t["to"] for t in transitions if t["version"] == promotion["version"]]
        stages = [s for s in path if s in ("shadow", "experiment", "champion")]
        assert stages[:3] == ["shadow", "experiment", "champion"], path
        assert "experiment" in promotion["reason"], promotion
    # Same seed, same run: the stages follow the simulated clock, not the wall clock.
    again, _ = _run()
    assert again["days"] == document["days"]
