"""The ``flywheel`` command: every service of the engine from the shell.

Reporting commands take ``--json`` and then print exactly one JSON document on stdout; progress
and logs go to stderr.
"""

from __future__ import annotations

import atexit
import gc
import ipaddress
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.text import Text
from typer._click.exceptions import NoArgsIsHelpError

from dataflywheel.cli import (
    context,
    datasets,
    decide,
    erasure,
    insight,
    keys,
    models,
    rollout,
    store_ops,
)
from dataflywheel.cli import simulate as simulate_cli
from dataflywheel.cli import value as value_cli
from dataflywheel.cli.common import (
    DbOption,
    FormatOption,
    JsonOption,
    MapOption,
    add_artifacts_option,
    emit_json,
    err,
    open_store,
    out,
    progress_bar,
)
from dataflywheel.config import load_settings
from dataflywheel.errors import FlywheelError, ValidationError
from dataflywheel.store.urls import redact_url

if TYPE_CHECKING:
    from dataflywheel.store.store import Kind

# Commands import what they use inside their function: `flywheel import events` then loads the
# store and the importer, not the web server, the models or the simulator.

app = typer.Typer(
    help="dataflywheel: feedback in, better recommendations and decisions out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Bulk-load events, items or users from CSV, JSON Lines or Parquet.")
app.add_typer(import_app, name="import")


@import_app.command("events")
def import_events(
    file: Annotated[Path, typer.Argument(help="The file to load.")],
    fmt: FormatOption = None,
    mapping: MapOption = None,
    event_type: Annotated[
        str | None, typer.Option("--type", help="Event type for rows without a type column.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Load events; re-running the same file stores nothing twice (resumable)."""
    from dataflywheel.ingest.importer import EventImporter, parse_mapping

    with closing(open_store(db)) as store, progress_bar() as progress:
        task = progress.add_task(f"importing {file.name}", total=None)
        result = EventImporter(store).run(
            file,
            fmt=fmt,
            mapping=parse_mapping(mapping),
            default_type=event_type,
            progress=lambda n: progress.advance(task, n),
        )
    report = result.to_dict()
    if as_json:
        emit_json(report)
        return
    out.print(
        f"{report['accepted']:,} events stored, {report['duplicates']:,} duplicates, "
        f"{report['rejected']:,} rejected in {report['seconds']} s "
        f"({report['rows_per_second']:,} rows/s)"
    )
    for error in report["errors"]:
        err.print(f"  row {error['row']}: {error['field']}: {error['error']}")


def _import_entities(
    kind: Kind, file: Path, fmt: str | None, mapping: str | None, db: str | None
) -> int:
    from dataflywheel.ingest.importer import import_entities, parse_mapping

    with closing(open_store(db)) as store:
        return import_entities(
            store,
            kind,
            file,
            fmt=fmt,
            mapping=parse_mapping(mapping),
        )


@import_app.command("items")
def import_items(
    file: Annotated[Path, typer.Argument(help="The file to load.")],
    fmt: FormatOption = None,
    mapping: MapOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upsert items (id, categories, hidden, created_at; other columns become attributes)."""
    count = _import_entities("items", file, fmt, mapping, db)
    emit_json({"upserted": count}) if as_json else out.print(f"{count:,} items upserted")


@import_app.command("users")
def import_users(
    file: Annotated[Path, typer.Argument(help="The file to load.")],
    fmt: FormatOption = None,
    mapping: MapOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upsert users (id, categories, created_at; other columns become attributes)."""
    count = _import_entities("users", file, fmt, mapping, db)
    emit_json({"upserted": count}) if as_json else out.print(f"{count:,} users upserted")


@app.command()
def stats(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Counts of events (by type), users, items, impressions and models."""
    with closing(open_store(db)) as store:
        document = store.stats()
    if as_json:
        emit_json(document)
        return
    from rich.table import Table

    table = Table(title="flywheel store")
    table.add_column("what")
    table.add_column("count", justify="right")
    for key in ("events", "users", "items", "impressions", "models"):
        table.add_row(key, f"{document[key]:,}")
    for event_type, count in document["events_by_type"].items():
        table.add_row(f"  {event_type}", f"{count:,}")
    out.print(table)


keys.register(app)
models.register(app)
decide.register(app)
datasets.register(app)
rollout.register(app)
insight.register(app)
simulate_cli.register(app)
store_ops.register(app)
erasure.register(app)
value_cli.register(app)
context.register(app)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
    db: DbOption = None,
) -> None:
    """Run the HTTP API, the dashboard and the background loop."""
    import uvicorn

    from dataflywheel.wheel import Flywheel

    settings = load_settings(db=db)
    with Flywheel(settings) as wheel:
        has_keys = wheel.keys.any_keys()
    if not is_loopback(host) and not has_keys:
        raise ValidationError(
            f"refusing to bind {host} without API keys; run `flywheel keys create --scope admin`",
            field="host",
        )
    os.environ["FLYWHEEL_DB"] = settings.db
    err.print(f"serving {redact_url(settings.db)} on http://{host}:{port} ({workers} worker(s))")
    uvicorn.run(
        "dataflywheel.api.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        access_log=False,
    )


def main() -> None:
    """Entry point: clear one-line errors instead of tracebacks."""
    # The interpreter's last collection at exit would traverse every object still alive (a
    # quarter of a second after an import) although nothing in them needs it: at exit, after
    # the command, move them out of the collector's sight.
    atexit.unregister(gc.freeze)  # once, also when called repeatedly in one process
    atexit.register(gc.freeze)
    try:
        code = add_artifacts_option(typer.main.get_command(app))(standalone_mode=False)
    except FlywheelError as exc:
        where = f" ({exc.field})" if isinstance(exc, ValidationError) and exc.field else ""
        fail(exc.message, where)
    # Usage errors: typer raises its own (vendored) click's exceptions, all TyperException.
    except NoArgsIsHelpError:
        sys.exit(2)  # `flywheel` or a group alone: typer has printed the help
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        fail(exc.format_message().rstrip(".") + hint)
    except (typer.Abort, KeyboardInterrupt):
        code = 130
    if code == 130:  # typer turns an interrupt into this exit code
        err.print("interrupted; the store is consistent (the last batch was rolled back)")
    if isinstance(code, int) and code:
        sys.exit(code)


def fail(message: str, where: str = "") -> NoReturn:
    """One line on stderr (passwords in URLs masked) and exit code 2."""
    line = " ".join(part.strip() for part in message.splitlines() if part.strip())
    err.print(Text.assemble(("error", "red"), f"{where}: {redact_url(line)}"), soft_wrap=True)
    sys.exit(2)
