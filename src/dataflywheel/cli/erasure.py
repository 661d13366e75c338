"""``flywheel users erase ID`` and ``flywheel items erase ID``: the right to be forgotten."""

from __future__ import annotations

from contextlib import closing
from typing import Annotated

import typer

from dataflywheel.cli.common import DbOption, JsonOption, emit_json, open_store, out
from dataflywheel.store.store import Kind

IdArgument = Annotated[str, typer.Argument(metavar="ID", help="The id to erase.")]


def register(app: typer.Typer) -> None:
    """Add the ``users`` and ``items`` groups, each with ``erase``."""
    users = typer.Typer(help="Manage users.", no_args_is_help=True)
    items = typer.Typer(help="Manage items.", no_args_is_help=True)
    app.add_typer(users, name="users")
    app.add_typer(items, name="items")

    @users.command("erase")
    def erase_user(user_id: IdArgument, db: DbOption = None, as_json: JsonOption = False) -> None:
        """Erase user ID: their events, impressions, linked decisions, labels and rollup rows,
        in one transaction, audited without the id. Running servers forget them within a
        second."""
        _erase("users", user_id, db, as_json)

    @items.command("erase")
    def erase_item(item_id: IdArgument, db: DbOption = None, as_json: JsonOption = False) -> None:
        """Erase item ID: its events, labels and rollup rows, and its id in logged lists,
        audited without the id. Running servers stop serving it within a second."""
        _erase("items", item_id, db, as_json)


def _erase(kind: Kind, key: str, db: str | None, as_json: bool) -> None:
    from dataflywheel.loop.erasure import erase

    with closing(open_store(db)) as store:
        done = erase(store, kind, key, actor="cli")
    if as_json:
        emit_json({"kind": kind[:-1], "deleted": done.deleted, "audit_id": done.audit_id})
        return
    total = sum(done.deleted.values())
    out.print(f"erased the {kind[:-1]}: {total:,} rows deleted (audit entry {done.audit_id})")
