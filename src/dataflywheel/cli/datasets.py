"""``flywheel datasets fetch NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, out


def register(app: typer.Typer) -> None:
    """Add the ``datasets`` group to ``app``."""
    group = typer.Typer(help="Public datasets for benchmarks and simulations.")
    app.add_typer(group, name="datasets")

    @group.command("fetch")
    def fetch(
        name: Annotated[
            str, typer.Argument(help="movielens-small, movielens-1m or movielens-25m.")
        ],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Download NAME from its publisher, verify its checksum, unpack it into the cache."""
        from dataflywheel import datasets

        err.print(f"fetching {name} into {datasets.cache_dir()}...")
        path = datasets.fetch(name)
        emit_json({"name": name, "path": str(path)}) if as_json else out.print(str(path))
