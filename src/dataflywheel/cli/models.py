"""``flywheel train | evaluate | models | promote | rollback``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, open_wheel, out

K = 10


def _metric(row: dict[str, Any], name: str) -> str:
    value = row.get(name)
    return "-" if value is None else f"{value:.4f}"


def register(app: typer.Typer) -> None:
    """Add the model commands to ``app``."""

    @app.command()
    def train(
        model: Annotated[
            str,
            typer.Option(
                help="auto, or one of popularity, itemknn, ials, bpr, ease, rp3beta, hybrid."
            ),
        ] = "auto",
        budget: Annotated[float, typer.Option(help="Seconds for the model search.")] = 60.0,
        engine: Annotated[
            str | None,
            typer.Option(
                help="local (this process) or spark (ALS in Spark MLlib; the `spark` extra). "
                "Default: the train_engine setting."
            ),
        ] = None,
        spark_master: Annotated[
            str | None,
            typer.Option(help="Spark master URL, e.g. local[2] or spark://host:7077."),
        ] = None,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Snapshot the events, search models within the budget, register the best version."""
        with open_wheel(db) as wheel:
            chosen = engine or wheel.settings.train_engine
            err.print(f"training ({model}, {chosen} engine, budget {budget:g} s)...")
            version = wheel.train(model, budget, engine=engine, spark_master=spark_master)
        if as_json:
            emit_json(version)
            return
        metrics = version["metrics"]
        out.print(
            f"{version['version']} ({version['name']}) registered as {version['status']}: "
            f"NDCG@{K} {_metric(metrics, f'ndcg@{K}')}, "
            f"Recall@{K} {_metric(metrics, f'recall@{K}')}"
        )

    @app.command()
    def evaluate(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Leaderboard: every registered configuration refit and scored on a temporal holdout."""
        with open_wheel(db) as wheel:
            rows = wheel.evaluate()
        if as_json:
            emit_json({"k": K, "leaderboard": rows})
            return
        table = Table(title=f"holdout leaderboard (each user's last 20% of events, k={K})")
        for column in (
            "version",
            "model",
            "status",
            "NDCG",
            "Recall",
            "MAP",
            "coverage",
            "novelty",
            "fit s",
        ):
            table.add_column(column)
        for row in rows:
            table.add_row(
                row["version"],
                row["name"],
                row["status"],
                _metric(row, f"ndcg@{K}"),
                _metric(row, f"recall@{K}"),
                _metric(row, f"map@{K}"),
                _metric(row, "coverage"),
                _metric(row, "novelty"),
                f"{row['fit_seconds']:.2f}",
            )
        out.print(table)

    @app.command()
    def models(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Registered model versions, their status and holdout metrics."""
        with open_wheel(db) as wheel:
            versions = wheel.models()
        if as_json:
            emit_json({"models": versions})
            return
        table = Table(title="model versions")
        for column in ("version", "model", "status", f"NDCG@{K}", "snapshot"):
            table.add_column(column)
        for v in versions:
            table.add_row(
                v["version"],
                v["name"],
                v["status"],
                _metric(v["metrics"], f"ndcg@{K}"),
                v["snapshot_id"],
            )
        out.print(table)

    @app.command()
    def promote(
        version: Annotated[str, typer.Argument(help="The version to make champion, e.g. v3.")],
        reason: Annotated[
            str, typer.Option(help="Recorded in the audit log.")
        ] = "manual promotion",
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Make VERSION the champion; the previous champion is retired."""
        with open_wheel(db) as wheel:
            result = wheel.promote(version, reason)
        emit_json(result) if as_json else out.print(f"{result['version']} is now the champion")

    @app.command()
    def rollback(
        reason: Annotated[str, typer.Option(help="Recorded in the audit log.")] = "manual rollback",
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Restore the previous champion."""
        with open_wheel(db) as wheel:
            result = wheel.rollback(reason)
        emit_json(result) if as_json else out.print(f"rolled back: {result['version']} is champion")
