"""``flywheel keys create|list|revoke|rotate``: API keys, never printed after creation."""

from __future__ import annotations

import time
from contextlib import closing
from typing import TYPE_CHECKING, Annotated

import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, err, open_store, out

if TYPE_CHECKING:
    from dataflywheel.keys import Issued

ReferenceArgument = Annotated[
    str,
    typer.Argument(
        metavar="PREFIX_OR_KEY", help="The prefix shown by `flywheel keys list`, or the whole key."
    ),
]


def _print_issued(issued: Issued, as_json: bool, **extra: object) -> None:
    from dataflywheel.keys import iso

    info = issued.info
    if as_json:
        emit_json(
            {
                "key": issued.key,
                "scope": info.scope,
                "prefix": info.prefix,
                "expires_at": info.expires_at,
                **extra,
            }
        )
        return
    out.print(issued.key)
    expiry = f"expires {iso(info.expires_at)}" if info.expires_at else "does not expire"
    err.print(f"scope {info.scope}, {expiry}; store it now, it is not shown again")


def _when(ts: float | None, missing: str = "") -> str:
    """A time in UTC, to the minute (what a table has room for)."""
    return missing if ts is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts))


def register(app: typer.Typer) -> None:
    """Add the ``keys`` group to ``app``."""
    group = typer.Typer(help="Manage API keys: create, list, revoke, rotate.")
    app.add_typer(group, name="keys")

    @group.command("create")
    def create(
        scope: Annotated[str, typer.Option("--scope", help="ingest or admin.")] = "ingest",
        expires: Annotated[
            float | None,
            typer.Option("--expires", metavar="DAYS", help="Valid for DAYS days (default: ever)."),
        ] = None,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create an API key and print it once; from then on every request needs a key."""
        from dataflywheel.keys import issue_key

        with closing(open_store(db)) as store:
            issued = issue_key(store, scope, expires_days=expires)
        _print_issued(issued, as_json)

    @group.command("list")
    def list_(db: DbOption = None, as_json: JsonOption = False) -> None:
        """Every key: prefix, scope, status, created, last used (to the minute), expiry."""
        from dataflywheel.keys import list_keys

        with closing(open_store(db)) as store:
            keys = list_keys(store)
        now = time.time()
        if as_json:
            emit_json({"keys": [info.to_dict(now) for info in keys]})
            return
        from rich.table import Table

        table = Table(title="API keys")
        table.add_column("prefix", no_wrap=True)  # the name to revoke by: never cut short
        for column in ("scope", "status", "created", "last used", "expires"):
            table.add_column(column)
        for info in keys:
            table.add_row(
                info.prefix,
                info.scope,
                info.status(now),
                _when(info.created_at),
                _when(info.last_used_at, "never"),
                _when(info.expires_at, "never"),
            )
        out.print(table)

    @group.command("revoke")
    def revoke(
        reference: ReferenceArgument, db: DbOption = None, as_json: JsonOption = False
    ) -> None:
        """Revoke a key now; every server on this store refuses it within half a second."""
        from dataflywheel.keys import revoke_key

        with closing(open_store(db)) as store:
            info = revoke_key(store, reference)
        if as_json:
            emit_json(info.to_dict(time.time()))
        else:
            out.print(f"revoked {info.prefix} ({info.scope})")

    @group.command("rotate")
    def rotate(
        reference: ReferenceArgument,
        grace: Annotated[
            float,
            typer.Option(
                "--grace",
                metavar="SECONDS",
                help="Keep the old key working this long, for a rolling switch (default 0).",
            ),
        ] = 0.0,
        db: DbOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Replace a key by a new one with the same scope and expiry, printed once."""
        from dataflywheel.keys import iso, rotate_key

        with closing(open_store(db)) as store:
            issued, old = rotate_key(store, reference, grace_seconds=grace)
        _print_issued(issued, as_json, replaced=old.prefix, replaced_revoked_at=old.revoked_at)
        if not as_json:
            err.print(f"{old.prefix} is revoked from {iso(old.revoked_at)}")
