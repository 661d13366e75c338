"""``flywheel ope`` (a model version evaluated on the served logs) and ``flywheel decisions``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, open_wheel, out


def register(app: typer.Typer) -> None:
    """Add the decision and off-policy evaluation commands to ``app``."""

    @app.command()
    def ope(
        candidate: Annotated[str, typer.Option(help="The model version to evaluate, e.g. v3.")],
        since: Annotated[
            float | None, typer.Option(help="Only impressions at or after (epoch seconds).")
        ] = None,
        seed: Annotated[int, typer.Option(help="Seed of the bootstrap intervals.")] = 0,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Estimate a model version's reward per served slot from the impression logs."""
        from dataflywheel.loop.logs import evaluate_candidate

        with open_wheel(db) as wheel:
            report = evaluate_candidate(
                wheel.store, wheel.registry, candidate, since=since, random_state=seed
            )
        if as_json:
            emit_json(report)
            return
        logged, estimate = report["logged"], report["estimate"]
        table = Table(title=f"off-policy evaluation: {report['impressions']:,} impressions")
        for column in ("policy", "reward per slot", "95% interval", "how"):
            table.add_column(column)
        served = ", ".join(f"{v} ({n})" for v, n in logged["served_by"].items())
        table.add_row(
            "logged",
            f"{logged['value']:.4f}",
            f"{logged['low']:.4f}..{logged['high']:.4f}",
            f"on-policy mean; served by {served}",
        )
        table.add_row(
            candidate,
            f"{estimate['value']:.4f}",
            f"{estimate['low']:.4f}..{estimate['high']:.4f}",
            f"{estimate['estimator']}: {estimate['reason']}",
        )
        out.print(table)

    @app.command()
    def decisions(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Decision deployments: settings, counters and apprentice agreement."""
        from dataflywheel.decide.service import DecisionService

        with open_wheel(db) as wheel:
            service = DecisionService(wheel.store, wheel.settings.artifacts_dir() / "decisions")
            try:
                report = {"deployments": [service.status(n) for n in service.names()]}
            finally:
                service.close()
        if as_json:
            emit_json(report)
            return
        table = Table(title="decision deployments")
        for column in ("deployment", "mode", "ranks", "learned", "mean reward", "agreement"):
            table.add_column(column)
        for d in report["deployments"]:
            table.add_row(
                d["deployment"],
                d["service"]["learning_mode"],
                f"{d['ranks']:,}",
                f"{d['learned']:,}",
                f"{d['mean_learned_reward']:.3f}",
                f"{d['apprentice']['agreement']:.0%}",
            )
        out.print(table)
