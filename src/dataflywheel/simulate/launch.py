"""Setting a run up: check the arguments, build the population, connect to the engine.

Simulated traffic must not mix with real traffic, so a run needs an empty store: a temporary one
by default, or the ``--db`` / ``--http`` engine the caller names if it holds no events yet.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from dataflywheel.errors import ConfigError, ValidationError
from dataflywheel.simulate.creators import generate_ugc_population
from dataflywheel.simulate.engine import EmbeddedEngine, Engine
from dataflywheel.simulate.http import HttpEngine
from dataflywheel.simulate.population import Population, generate_population
from dataflywheel.simulate.ratings import population_from_ratings
from dataflywheel.simulate.runner import Simulation
from dataflywheel.simulate.scenarios import Scenario

__all__ = [
    "ENGINE_SETTINGS",
    "build_population",
    "check_arguments",
    "new_simulation",
    "open_engine",
]

ENGINE_SETTINGS: dict[str, Any] = {
    "train_budget_seconds": 30.0,
    "sqlite_synchronous": "NORMAL",
}
"""Overrides for an embedded store: a daily search bounded by its trial count (the budget is
only a safety net, so a loaded machine gives the same models) and SQLite's NORMAL sync (safe
against a crash of this process)."""
TRAIN_TRIALS = 3


def seeded_settings(seed: int) -> dict[str, Any]:
    """Settings that make the engine's random draws follow the run's seed (serving exploration,
    model search) and training independent of the wall clock (a trial count, not a budget)."""
    return {"seed": seed, "train_max_trials": TRAIN_TRIALS}


def check_arguments(days: int, users: int) -> None:
    if days < 1:
        raise ValidationError("must be at least 1", field="days")
    if users < 1:
        raise ValidationError("must be at least 1 (a simulation needs users)", field="users")


def build_population(
    users: int, days: int, seed: int, ratings: Path | None = None, ugc: bool = False
) -> Population:
    """Ground truth from ``ratings`` (MovieLens format) or generated, seeded; ``ugc``: a smaller
    initial catalogue with room for the creators' uploads."""
    rng = np.random.default_rng([seed, 0])
    if ratings is not None:
        if ugc:
            raise ValidationError("the ugc scenario generates its own catalogue", field="ratings")
        return population_from_ratings(ratings, days, rng)
    if ugc:
        return generate_ugc_population(users, min(1000, max(100, users // 2)), days, rng)
    return generate_population(users, min(2000, max(200, users)), days, rng)


@contextmanager
def open_engine(
    scenario: Scenario,
    seed: int,
    db: str | None = None,
    http: str | None = None,
    api_key: str | None = None,
) -> Iterator[Engine]:
    """The engine to drive (a temporary store when neither ``db`` nor ``http`` is given); it must
    hold no events yet."""
    if db is not None and http is not None:
        raise ValidationError("give either --db or --http, not both", field="http")
    with tempfile.TemporaryDirectory(prefix="flywheel-sim-") as scratch:
        engine: Engine
        if http is not None:
            if scenario.engine_settings:
                raise ConfigError(
                    f"scenario {scenario.name!r} needs engine settings "
                    f"{scenario.engine_settings}; run it on an embedded store (--db)",
                    field="scenario",
                )
            engine = HttpEngine(http, api_key)
        else:
            url = db or f"sqlite:///{Path(scratch) / 'simulation.db'}"
            engine = EmbeddedEngine(
                url, **ENGINE_SETTINGS, **seeded_settings(seed), **scenario.engine_settings
            )
        try:
            held = engine.event_count()
            if held:
                raise ValidationError(
                    f"the store already holds {held:,} events; simulate into an empty store",
                    field="http" if http is not None else "db",
                )
            yield engine
        finally:
            engine.close()


def new_simulation(
    engine: Engine,
    scenario: Scenario,
    *,
    days: int,
    users: int,
    seed: int,
    ratings: Path | None = None,
) -> Simulation:
    """A seeded simulation of ``scenario`` against ``engine``, ready to ``run``; interrupting the
    run leaves the finished days in ``Simulation.reports``."""
    check_arguments(days, users)
    population = build_population(users, days, seed, ratings, ugc=scenario.ugc)
    return Simulation(engine, population, scenario, users, days, seed)
