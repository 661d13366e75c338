"""``flywheel kpis``, ``flywheel health`` and ``flywheel report``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, open_wheel, out

FromOption = Annotated[
    str | None, typer.Option("--from", help="First day, YYYY-MM-DD (UTC, inclusive).")
]
ToOption = Annotated[
    str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (UTC, inclusive).")
]

_COLUMNS = (
    "date",
    "dau",
    "mau",
    "sessions",
    "avg_session_seconds",
    "events",
    "strong_events",
    "ctr",
)
_COLOURS = {"pass": "green", "warn": "yellow", "fail": "red"}


def _cell(value: object) -> str:
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int | float) else str(value)


def register(app: typer.Typer) -> None:
    """Add the insight commands to the ``flywheel`` app."""

    @app.command()
    def kpis(
        start: FromOption = None,
        end: ToOption = None,
        grain: Annotated[str, typer.Option(help="day, week or month.")] = "day",
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """KPIs per day/week/month (same object as GET /v1/kpis)."""
        from dataflywheel.insight import kpis as compute

        with open_wheel(db) as wheel:
            document = compute(wheel.store, start, end, grain)
        if as_json:
            emit_json(document)
            return
        if not document["rows"]:
            out.print(document.get("note", "no data"))
            return
        table = Table(title=f"KPIs by {document['grain']}, {document['from']} to {document['to']}")
        for column in _COLUMNS:
            table.add_column(column, justify="left" if column == "date" else "right")
        for row in document["rows"]:
            table.add_row(*(_cell(row[c]) for c in _COLUMNS))
        out.print(table)

    @app.command()
    def health(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Is the flywheel spinning? (same object as GET /v1/health/flywheel)"""
        from dataflywheel.insight import health as assess

        with open_wheel(db) as wheel:
            document = assess(wheel.store)
        if as_json:
            emit_json(document)
            return
        verdict = document["verdict"]
        if document["stalled_at"]:
            verdict += f" at condition {document['stalled_at']}"
        out.print(f"[bold]flywheel: {verdict}[/bold]")
        if "reason" in document:
            out.print(document["reason"])
        for condition in document["conditions"]:
            colour = _COLOURS[condition["status"]]
            out.print(
                f"[{colour}]{condition['status']:>4}[/{colour}]  {condition['id']}. "
                f"{condition['name']} (confidence {condition['confidence']})"
            )
            out.print(f"      next: {condition['next_action']}")

    @app.command()
    def report(
        output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")],
        start: FromOption = None,
        end: ToOption = None,
        db: DbOption = None,
    ) -> None:
        """Write the dashboard as one self-contained HTML file (works offline)."""
        from dataflywheel.insight import render_report

        with open_wheel(db) as wheel:
            html = render_report(wheel.store, start, end)
        output.write_text(html, encoding="utf-8")
        err.print(f"wrote {output} ({len(html) / 1e6:.1f} MB)")
