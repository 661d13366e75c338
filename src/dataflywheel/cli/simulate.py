"""``flywheel simulate`` and ``flywheel demo``: synthetic users driving the real engine."""

from __future__ import annotations

import shutil
import sys
import threading
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, out

if TYPE_CHECKING:
    from dataflywheel.simulate.runner import DayReport, Simulation

__all__ = ["register"]

DEMO_DB = Path("demo.db")
# The names of ``dataflywheel.simulate.SCENARIOS`` for the help text: importing the simulation
# package (models, scipy) just to list them would slow every ``flywheel`` command down; a test
# keeps this list equal to the real one.
SCENARIO_NAMES = (
    "flywheel",
    "staged",
    "static",
    "weak-signal",
    "no-learning",
    "imperceptible",
    "inelastic",
    "ugc",
)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )


def _day_status(report: DayReport) -> str:
    return (
        f"DAU {report.dau:,}  events {report.events:,}  quality {report.quality:.3f}  "
        f"model {report.model_version or '-'}"
    )


def _print_summary(simulation: Simulation) -> None:
    summary = simulation.summary()
    out.print(
        f"{simulation.scenario.name}: {summary['days']} days, DAU {summary['dau_first_day']:,} "
        f"→ {summary['dau_last_day']:,}, {summary['events']:,} events "
        f"({summary['strong_events']:,} strong), quality {summary['quality_first_week']:.3f} "
        f"→ {summary['quality_last_week']:.3f}, {summary['model_versions']} model version(s)"
    )
    seconds = simulation.timings.seconds
    err.print("time: " + ", ".join(f"{phase} {value:.1f} s" for phase, value in seconds.items()))


def simulate(
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 30,
    users: Annotated[
        int, typer.Option(help="Users at the start (satisfied ones bring more).")
    ] = 500,
    scenario: Annotated[
        str, typer.Option(help="One of: " + ", ".join(SCENARIO_NAMES) + ".")
    ] = "flywheel",
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    ratings: Annotated[
        Path | None,
        typer.Option(help="MovieLens-format ratings (userId,movieId,rating) for the ground truth."),
    ] = None,
    db: DbOption = None,
    http: Annotated[
        str | None, typer.Option("--http", help="Drive a running server at this URL instead.")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", envvar="FLYWHEEL_API_KEY", help="Key for --http.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Simulate users on the real engine (into an empty store; a temporary one by default)."""
    from dataflywheel.simulate.launch import check_arguments, new_simulation, open_engine
    from dataflywheel.simulate.scenarios import get_scenario

    chosen = get_scenario(scenario)
    check_arguments(days, users)
    with open_engine(chosen, seed, db=db, http=http, api_key=api_key) as engine:
        simulation = new_simulation(
            engine, chosen, days=days, users=users, seed=seed, ratings=ratings
        )
        interrupted = False
        with _progress() as progress:
            task = progress.add_task(f"simulating {chosen.name}", total=days, status="")

            def advance(report: DayReport) -> None:
                progress.update(task, advance=1, status=_day_status(report))

            try:
                simulation.run(advance)
            except KeyboardInterrupt:
                interrupted = True
    document: dict[str, Any] = simulation.document(seed)
    if interrupted:
        err.print(f"interrupted after day {len(simulation.reports)}; the store is consistent")
    if as_json:
        emit_json(document)
    else:
        _print_summary(simulation)
    if interrupted:
        sys.exit(130)


def _fresh_demo_store() -> str:
    """Delete the previous demo store (``demo.db`` and its artifacts) in the working directory."""
    for path in (DEMO_DB, Path("demo.db-wal"), Path("demo.db-shm")):
        path.unlink(missing_ok=True)
    shutil.rmtree(DEMO_DB.with_name("demo.artifacts"), ignore_errors=True)
    return f"sqlite:///{DEMO_DB}"


def demo(
    days: Annotated[int, typer.Option(help="Days to simulate.")] = 60,
    users: Annotated[int, typer.Option(help="Users at the start.")] = 1000,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the summary and exit; no server.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the dashboard.")] = 8000,
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = 0,
    db: Annotated[
        str | None,
        typer.Option("--db", help="Store for the loop-on run (default: ./demo.db, replaced)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Run the same users with the loop on and off, then show the dashboard of the loop-on run."""
    from dataflywheel.simulate.demo import run_demo, verdict
    from dataflywheel.simulate.launch import check_arguments

    check_arguments(days, users)
    if db is None:
        db = _fresh_demo_store()
        err.print(f"demo store: {DEMO_DB.resolve()} (replaced on every run)")
    with _progress() as progress:
        task = progress.add_task("flywheel vs static", total=days, status="")
        result = run_demo(
            db,
            days=days,
            users=users,
            seed=seed,
            on_day=lambda report: progress.update(task, advance=1, status=_day_status(report)),
        )
    if as_json:
        emit_json(result)
    else:
        out.print(verdict(result["comparison"]))
    if no_browser:
        return
    from dataflywheel.cli import serve

    url = f"http://127.0.0.1:{port}/"
    err.print(f"dashboard of the loop-on run: {url} (Ctrl-C to stop)")
    threading.Timer(1.5, webbrowser.open, args=(url,)).start()
    serve(host="127.0.0.1", port=port, workers=1, db=db)


def register(app: typer.Typer) -> None:
    """Add ``simulate`` and ``demo`` to the ``flywheel`` command."""
    app.command()(simulate)
    app.command()(demo)
