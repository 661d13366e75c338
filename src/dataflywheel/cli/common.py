"""Shared pieces of the ``flywheel`` commands: options, JSON output, progress bars."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dataflywheel.config import load_settings

if TYPE_CHECKING:
    from typer._click.core import Command

    from dataflywheel.store.store import Store
    from dataflywheel.wheel import Flywheel

err = Console(stderr=True)
out = Console()

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="FLYWHEEL_DB", help="Store URL (sqlite:///... or postgresql://...)."
    ),
]


def _use_artifacts(value: str | None) -> str | None:
    """Hand ``--artifacts`` on as ``FLYWHEEL_ARTIFACTS``, which every settings load reads: this
    command, ``serve``'s workers and the loop's training child."""
    if value is None:
        return None
    path = value.removeprefix("file://")
    if not path.strip() or "://" in path:
        raise typer.BadParameter("must be a local directory (a path or file://...)")
    # Absolute, so that the registry's artifact paths stay valid from any working directory.
    os.environ["FLYWHEEL_ARTIFACTS"] = str(Path(path).expanduser().resolve())
    return value


def _artifacts_template(
    artifacts: Annotated[
        str | None,
        typer.Option(
            "--artifacts",
            envvar="FLYWHEEL_ARTIFACTS",
            help="Model artifacts directory (default: beside the store).",
            callback=_use_artifacts,
            expose_value=False,
        ),
    ] = None,
) -> None:
    """Only carries the definition of ``--artifacts`` (see :func:`add_artifacts_option`)."""


def add_artifacts_option(command: Command) -> Command:
    """Give every command that takes ``--db`` the ``--artifacts`` option too: defined once here
    rather than in every signature, as it reaches the code through the settings."""
    template = typer.main.get_command(typer.Typer(callback=_artifacts_template))
    option = next(p for p in template.params if p.name == "artifacts")
    pending = [command]
    while pending:
        current = pending.pop()
        pending.extend(getattr(current, "commands", {}).values())
        names = [p.name for p in current.params]
        if "db" in names and "artifacts" not in names:
            current.params.insert(names.index("db") + 1, copy.copy(option))
    return command


JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document on stdout.")]
FormatOption = Annotated[
    str | None, typer.Option("--format", help="csv, jsonl or parquet (default: from the suffix).")
]
MapOption = Annotated[
    str | None,
    typer.Option("--map", help="Column mapping, e.g. user_id=userId,item_id=movieId,value=rating."),
]


def open_wheel(db: str | None) -> Flywheel:
    """The whole engine (imports the models and the trainer: use :func:`open_store` if the
    command only reads or writes the store)."""
    from dataflywheel.wheel import Flywheel

    return Flywheel(load_settings(db=db))


def open_store(db: str | None) -> Store:
    """Just the store, for commands such as ``flywheel import`` that need nothing else."""
    from dataflywheel.store.store import Store

    return Store(load_settings(db=db))


def emit_json(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")


def progress_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )
