"""The simulator drives the engine only through its public interface."""

from __future__ import annotations

import ast
from pathlib import Path

import dataflywheel as dfw
import dataflywheel.simulate as simulate
from dataflywheel.cli import simulate as cli_simulate
from dataflywheel.simulate.launch import new_simulation, open_engine
from dataflywheel.simulate.scenarios import get_scenario

ALLOWED = ("dataflywheel.simulate", "dataflywheel.errors", "dataflywheel.config")
PUBLIC = {"dataflywheel", "dataflywheel.cli", "dataflywheel.cli.common"}


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_simulator_imports_no_engine_internals() -> None:
    files = [*Path(simulate.__file__).parent.glob("*.py"), Path(cli_simulate.__file__)]
    for path in files:
        for module in imported_modules(path):
            assert not module.startswith("sqlalchemy"), (path.name, module)
            if module.startswith("dataflywheel"):
                assert module in PUBLIC or module.startswith(ALLOWED), (path.name, module)


def test_all_names_exist() -> None:
    for name in simulate.__all__:
        assert hasattr(simulate, name), name


def test_stored_impressions_and_events_are_the_engines(tmp_path: Path) -> None:
    scenario = get_scenario("flywheel")
    url = f"sqlite:///{tmp_path / 'sim.db'}"
    with open_engine(scenario, seed=3, db=url) as engine:
        simulation = new_simulation(engine, scenario, days=3, users=40, seed=3)
        simulation.run()
    with dfw.open(url) as wheel:
        stats = wheel.stats()
        versions = wheel.models()
    reports = simulation.reports
    assert stats["impressions"] == simulation.timings.calls["recommend"]
    assert stats["events"] == sum(r.events for r in reports)
    assert 0 < stats["users"] <= len(simulation.users)
    assert len(versions) >= 1
