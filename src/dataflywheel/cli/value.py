"""``flywheel value``: what each extra unit of data, and each slice of it, is worth."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, open_wheel, out

__all__ = ["register"]

_COLOURS = {"carries value": "green", "no detectable value": "yellow", "harmful": "red"}


def _span(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "—"
    return f"{value:+.4f} ({row['low']:+.4f} to {row['high']:+.4f})"


def register(app: typer.Typer) -> None:
    """Add ``flywheel value`` to the app."""

    @app.command()
    def value(
        budget: Annotated[
            float, typer.Option(help="Seconds to spend; parts left out are listed.")
        ] = 120.0,
        refresh: Annotated[
            bool,
            typer.Option(
                "--refresh/--cached",
                help="Measure unless a complete result at this watermark exists (default), "
                "or print the last result as it is.",
            ),
        ] = True,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """The value of data: learning curve, next doubling, value by slice, advice (same
        object as GET /v1/value)."""
        from dataflywheel.learn.value import value_report

        with open_wheel(db) as wheel:
            err.print("measuring the value of data (retrains the model several times)")
            document = value_report(
                wheel.store,
                wheel.registry,
                wheel.settings.artifacts_dir(),
                refresh=refresh,
                budget=budget,
            )
        if as_json:
            emit_json(document)
            return
        _print(document)


def _print(document: dict[str, Any]) -> None:
    model = document["model"]
    out.print(
        f"[bold]value of data[/bold] for {model['name']} ({model['version'] or 'no champion'}), "
        f"{document['train_events']:,} training events, {document['holdout_users']:,} holdout "
        f"users, watermark {document['watermark']}"
    )
    table = Table(title="learning curve (a growing random share of the users)")
    for column in ("fraction", "events", "ndcg@10", "95% interval"):
        table.add_column(column, justify="right")
    for point in document["curve"]:
        table.add_row(
            f"{point['fraction']:g}",
            f"{point['events']:,}",
            f"{point['ndcg']:.4f}",
            f"{point['low']:.4f} to {point['high']:.4f}",
        )
    out.print(table)
    out.print(f"next doubling: {_span(document['next_doubling'], 'gain')}")
    slices = Table(title="value by slice (delta = with − without)")
    for column in ("kind", "name", "delta (95% interval)", "verdict"):
        slices.add_column(column)
    for entry in document["slices"]:
        colour = _COLOURS[entry["verdict"]]
        slices.add_row(
            entry["kind"],
            entry["name"],
            _span(entry, "delta"),
            f"[{colour}]{entry['verdict']}[/{colour}]",
        )
    out.print(slices)
    for advice in document["advice"]:
        out.print(f"• {advice['message']}")
    if not document["complete"]:
        out.print("[yellow]incomplete:[/yellow] " + "; ".join(document["skipped"]))
