"""The health verdict on stores written by the simulator, which drives the real engine.

Each scenario breaks one flywheel condition (docs/simulator.md); the verdict reads only the store
and must stall at that condition, or say ``spinning`` for the full loop. The simulations run two
at a time in worker processes (one store each); every test then reads its own store.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path

import pytest

import dataflywheel as dfw
from dataflywheel.insight import health
from dataflywheel.simulate import get_scenario, new_simulation, open_engine

SEED = 1
# (days, users): the smallest population, on this seed, that still shows the behaviour. Conditions
# 3 and 4 need ~500 impressions / user-days a side; the others only enough data to be judged
# (1 000 events on 7 days) and, for `static`, a model more than 14 days behind the data.
SIZES = {
    "flywheel": (30, 300),
    "inelastic": (40, 300),  # 30 days: too few exploration clicks at matched positions
    "imperceptible": (21, 200),
    "static": (21, 200),
    "weak-signal": (21, 200),
    "no-learning": (14, 150),
}
EXPECTED = {
    "flywheel": ("spinning", None),
    "weak-signal": ("stalled", 1),
    "no-learning": ("stalled", 2),
    "static": ("stalled", 2),
    "imperceptible": ("stalled", 3),
    "inelastic": ("stalled", 4),
}

pytestmark = pytest.mark.slow


def simulate(name: str, url: str) -> str:
    """Run scenario ``name`` into the store at ``url`` (in a worker process)."""
    days, users = SIZES[name]
    scenario = get_scenario(name)
    with open_engine(scenario, seed=SEED, db=url) as engine:
        new_simulation(engine, scenario, days=days, users=users, seed=SEED).run()
    return url


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Future[str]]]:
    root: Path = tmp_path_factory.mktemp("scenarios")
    with ProcessPoolExecutor(max_workers=2) as pool:
        yield {
            name: pool.submit(simulate, name, f"sqlite:///{root / name}.db")
            for name in sorted(SIZES, key=lambda n: -SIZES[n][0] * SIZES[n][1])
        }


@pytest.mark.parametrize("scenario", list(EXPECTED))
def test_verdict_on_simulated_store(scenario: str, stores: dict[str, Future[str]]) -> None:
    url = stores[scenario].result(timeout=600)
    with dfw.open(url) as wheel:
        doc = health(wheel.store)
    statuses = [c["status"] for c in doc["conditions"]]
    assert (doc["verdict"], doc["stalled_at"]) == EXPECTED[scenario], statuses
    stalled = EXPECTED[scenario][1]
    if stalled is not None:
        assert all(s == "pass" for s in statuses[: stalled - 1]), statuses
    evidence = [c["evidence"] for c in doc["conditions"]]
    if scenario == "imperceptible":
        assert evidence[2]["serving"]["uniform_share"] >= 0.9
    if scenario == "flywheel":
        assert evidence[2]["serving"]["uniform_share"] < 0.9
        assert evidence[3]["user_response"]["diff_low"] > 0
