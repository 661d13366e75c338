"""The demo: the same users and catalogue with the loop on (``flywheel``) and off (``static``).

The two runs use separate stores and run side by side on two processes: the ``flywheel`` run in
this process on the demo store (the one the dashboard shows), the ``static`` run in a child
process on a temporary store.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from dataflywheel.errors import FlywheelError
from dataflywheel.simulate.launch import check_arguments, new_simulation, open_engine
from dataflywheel.simulate.runner import DayReport
from dataflywheel.simulate.scenarios import get_scenario

__all__ = ["compare", "run_demo", "verdict"]


def _static_run(days: int, users: int, seed: int, pipe: Connection) -> None:
    """Child process: the ``static`` scenario on a temporary store; sends back its document."""
    scenario = get_scenario("static")
    try:
        with open_engine(scenario, seed) as engine:
            simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
            simulation.run()
            pipe.send(simulation.document(seed))
    except KeyboardInterrupt:
        pipe.send({"error": "interrupted"})
    except Exception as exc:  # the parent reports it; a child traceback would be lost
        pipe.send({"error": f"{type(exc).__name__}: {exc}"})


def run_demo(
    db: str,
    *,
    days: int,
    users: int,
    seed: int,
    on_day: Callable[[DayReport], None] | None = None,
) -> dict[str, Any]:
    """Both runs; ``{"flywheel": document, "static": document, "comparison": {...}}``."""
    check_arguments(days, users)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_static_run, args=(days, users, seed, sender), daemon=True)
    child.start()
    try:
        scenario = get_scenario("flywheel")
        with open_engine(scenario, seed, db=db) as engine:
            simulation = new_simulation(engine, scenario, days=days, users=users, seed=seed)
            simulation.run(on_day)
            flywheel = simulation.document(seed)
        static = receiver.recv()
    finally:
        if child.is_alive():
            child.join(timeout=5)
        if child.is_alive():
            child.terminate()
    if "error" in static:
        raise FlywheelError(f"the static run failed: {static['error']}")
    return {"flywheel": flywheel, "static": static, "comparison": compare(flywheel, static)}


def compare(flywheel: dict[str, Any], static: dict[str, Any]) -> dict[str, Any]:
    """Side-by-side outcome figures of the two runs."""
    on, off = flywheel["summary"], static["summary"]
    return {
        "days": on["days"],
        "dau_last_day": {"flywheel": on["dau_last_day"], "static": off["dau_last_day"]},
        "events": {"flywheel": on["events"], "static": off["events"]},
        "events_gain_percent": round(100.0 * (on["events"] / max(off["events"], 1) - 1.0), 1),
        "quality_last_week": {
            "flywheel": on["quality_last_week"],
            "static": off["quality_last_week"],
        },
        "model_versions": {"flywheel": on["model_versions"], "static": off["model_versions"]},
    }


def verdict(comparison: dict[str, Any]) -> str:
    """What happened, in plain words."""
    dau, events = comparison["dau_last_day"], comparison["events"]
    quality = comparison["quality_last_week"]
    return (
        f"With the loop on, DAU on day {comparison['days']} is {dau['flywheel']:,} vs "
        f"{dau['static']:,} without it (model trained once); events "
        f"{comparison['events_gain_percent']:+.0f}% ({events['flywheel']:,} vs "
        f"{events['static']:,}); true quality of the served lists in the last week "
        f"(NDCG@10 against each user's real favourites) {quality['flywheel']:.3f} vs "
        f"{quality['static']:.3f}."
    )
