"""Shared pieces of the ``flywheel`` commands: options, JSON output, progress bars."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from dataflywheel.config import load_settings

if TYPE_CHECKING:
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
