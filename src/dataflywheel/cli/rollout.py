"""``flywheel experiment create|status|stop`` and ``flywheel labels export``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, open_wheel, out
from dataflywheel.errors import ValidationError


def _spec(text: str) -> dict[str, Any]:
    source = Path(text[1:]).read_text() if text.startswith("@") else text
    try:
        spec = orjson.loads(source)
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"not valid JSON: {exc}", field="spec") from None
    if not isinstance(spec, dict):
        raise ValidationError("must be a JSON object", field="spec")
    return spec


def register(app: typer.Typer) -> None:
    """Add the ``experiment`` and ``labels`` groups to ``app``."""
    experiment = typer.Typer(help="A/B tests and interleaving experiments.")
    labels = typer.Typer(help="The label queue and curated feedback.")
    app.add_typer(experiment, name="experiment")
    app.add_typer(labels, name="labels")

    @experiment.command("create")
    def create(
        spec: Annotated[str, typer.Argument(help="JSON spec, or @FILE holding it.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Start an experiment from a JSON spec (arms with model versions and weights)."""
        with open_wheel(db) as wheel:
            created = wheel.loop.rollout.experiments.create(_spec(spec))
        emit_json(created) if as_json else out.print(f"experiment {created['id']} running")

    @experiment.command("status")
    def status(
        experiment_id: Annotated[str, typer.Argument(help="The experiment id.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Per-arm metrics, the analysis and the decision so far."""
        from dataflywheel.experiments.report import experiment_status

        with open_wheel(db) as wheel:
            rollout = wheel.loop.rollout
            report = experiment_status(
                wheel.store, rollout.experiments.get(experiment_id), rollout.config, time.time()
            )
        if as_json:
            emit_json(report)
            return
        out.print(f"experiment {report['id']}: {report['status']}")
        for arm in report.get("arms", []):
            out.print(f"  {arm['name']}: {arm.get('metrics', {})}")

    @experiment.command("stop")
    def stop(
        experiment_id: Annotated[str, typer.Argument(help="The experiment id.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Stop a running experiment."""
        with open_wheel(db) as wheel:
            stopped = wheel.loop.rollout.experiments.finish(experiment_id, "stopped from the CLI")
        emit_json(stopped) if as_json else out.print(f"experiment {experiment_id} stopped")

    @labels.command("export")
    def export(
        output: Annotated[Path, typer.Option("-o", "--output", help=".jsonl or .parquet file.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Export curated feedback (labels, corrections as preference pairs)."""
        with open_wheel(db) as wheel:
            count = wheel.loop.rollout.labels.export(output)
        emit_json({"rows": count, "path": str(output)}) if as_json else out.print(
            f"{count} rows written to {output}"
        )
