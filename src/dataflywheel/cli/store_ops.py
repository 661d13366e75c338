"""``flywheel backup | restore | export``: copies of the store for safety and for the lake."""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Annotated

import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, open_store, out
from dataflywheel.config import load_settings
from dataflywheel.errors import ValidationError

KINDS = ("events", "impressions")


def register(app: typer.Typer) -> None:
    """Add ``backup``, ``restore`` and the ``export`` group to ``app``."""

    @app.command()
    def backup(
        path: Annotated[Path, typer.Argument(help="New directory to write the backup into.")],
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Copy the store and its model artifacts into PATH while the store stays in use
        (SQLite: its backup API; PostgreSQL: pg_dump, which must be on PATH)."""
        from dataflywheel.store.backup import backup as run

        report = run(load_settings(db=db), path)
        if as_json:
            emit_json(report)
            return
        out.print(
            f"backed up the {report['dialect']} store into {report['path']} "
            f"({report['files']} files, {report['bytes']:,} bytes, {report['seconds']} s)"
        )

    @app.command()
    def restore(
        path: Annotated[Path, typer.Argument(help="A directory written by `flywheel backup`.")],
        force: Annotated[
            bool, typer.Option("--force", help="Replace a store that already holds data.")
        ] = False,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Restore the backup at PATH into the store named by --db and its artifacts directory;
        refuses a store that holds data unless --force."""
        from dataflywheel.store.backup import restore as run

        report = run(load_settings(db=db), path, force=force)
        if as_json:
            emit_json(report)
            return
        out.print(
            f"restored {report['path']} into {report['db']} "
            f"(artifacts in {report['artifacts']}, {report['seconds']} s)"
        )

    @app.command("export")
    def export(
        kind: Annotated[str, typer.Argument(help="events or impressions.")],
        path: Annotated[Path, typer.Argument(help="Directory of the partitioned dataset.")],
        fmt: Annotated[str, typer.Option("--format", help="Output format: parquet.")] = "parquet",
        since: Annotated[
            str | None,
            typer.Option("--since", help="Only rows at or after this UTC day, YYYY-MM-DD."),
        ] = None,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Write the rows stored since the last export to PATH/date=YYYY-MM-DD/part-0.parquet
        (incremental and idempotent: a re-run adds only what is new)."""
        from dataflywheel.store.export import export as run
        from dataflywheel.store.export import parse_since

        if kind not in KINDS:
            raise ValidationError(f"kind must be events or impressions, got {kind!r}", field="kind")
        if fmt != "parquet":
            raise ValidationError(f"format must be parquet, got {fmt!r}", field="format")
        start = parse_since(since)
        with closing(open_store(db)) as store:
            err.print(f"exporting {kind} to {path}...")
            report = run(store, kind, path, since=start).to_dict()
        if as_json:
            emit_json(report)
            return
        out.print(
            f"{report['rows']:,} {kind} exported into {len(report['partitions'])} day "
            f"partition(s) of {report['path']} in {report['seconds']} s"
        )
