"""Synthetic users with ground-truth preferences, driving the real engine through its public API.

A :class:`Simulation` plays days of a :class:`Scenario` (the full loop, or one flywheel condition
broken) against an :class:`Engine`: an embedded store (``dataflywheel.open``) or a running server
(:class:`HttpEngine`), and reports DAU, sessions, events and the true quality of what was served.
"""

from __future__ import annotations

from dataflywheel.simulate.choice import ChoiceModel
from dataflywheel.simulate.demo import compare, run_demo, verdict
from dataflywheel.simulate.engine import EmbeddedEngine, Engine
from dataflywheel.simulate.http import HttpEngine
from dataflywheel.simulate.launch import build_population, new_simulation, open_engine
from dataflywheel.simulate.population import Population, generate_population
from dataflywheel.simulate.ratings import population_from_ratings
from dataflywheel.simulate.runner import DayReport, Simulation, Timings
from dataflywheel.simulate.scenarios import SCENARIOS, Scenario, get_scenario

__all__ = [
    "SCENARIOS",
    "ChoiceModel",
    "DayReport",
    "EmbeddedEngine",
    "Engine",
    "HttpEngine",
    "Population",
    "Scenario",
    "Simulation",
    "Timings",
    "build_population",
    "compare",
    "generate_population",
    "get_scenario",
    "new_simulation",
    "open_engine",
    "population_from_ratings",
    "run_demo",
    "verdict",
]
