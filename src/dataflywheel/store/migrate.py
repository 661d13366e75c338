"""Bring a store's schema to the newest Alembic revision.

Opening a store that is already current is the common case (every CLI command, every server
worker), so it is decided without Alembic: the revisions stored in ``alembic_version`` are
compared with the heads read from the migration files' ``revision =`` / ``down_revision =``
lines. Importing Alembic only happens when a migration must run, and then the migrations run
here rather than through ``migrations/env.py``: that file imports every table module for
autogenerate (the insight package pulls in scipy.stats, a second of start-up), which an
upgrade does not need.
"""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
VERSION_TABLE = "alembic_version"
# A module-level assignment of a migration file: ``revision = "0004"``, ``down_revision = None``
# or a tuple for a merge (an optional annotation such as ``: str | None`` is allowed).
_ASSIGNMENT = re.compile(
    r"^(?P<name>revision|down_revision)\s*(?::[^=\n]*)?=\s*(?P<value>.+?)\s*$", re.MULTILINE
)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def _revision_ids(value: str) -> tuple[str, ...]:
    parsed = ast.literal_eval(value)
    if parsed is None:
        return ()
    if isinstance(parsed, str):
        return (parsed,)
    return tuple(str(revision) for revision in parsed)


@functools.cache
def head_revisions() -> frozenset[str]:
    """The head revision ids of the migration scripts, read from their source text."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        found = {m["name"]: m["value"] for m in _ASSIGNMENT.finditer(path.read_text())}
        if "revision" not in found:
            continue
        revisions.update(_revision_ids(found["revision"]))
        parents.update(_revision_ids(found.get("down_revision", "None")))
    return frozenset(revisions - parents)


def stored_revisions(engine: Engine) -> frozenset[str] | None:
    """The revisions recorded in the store (None when it has no version table yet)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    except DBAPIError:
        return None
    return frozenset(str(row[0]) for row in rows)


def is_current(engine: Engine) -> bool:
    """Whether the store is at the migration scripts' head (nothing to migrate)."""
    return stored_revisions(engine) == head_revisions()


def upgrade(engine: Engine) -> None:
    """Apply every pending migration in one transaction (SQLite and PostgreSQL alike)."""
    if is_current(engine):
        return
    from alembic.runtime.environment import EnvironmentContext
    from alembic.script import ScriptDirectory

    config = alembic_config()
    script = ScriptDirectory.from_config(config)

    def steps(revision: Any, _context: Any) -> Any:
        # What ``alembic.command.upgrade`` hands to its environment for "head".
        return script._upgrade_revs("head", revision)

    with (
        engine.begin() as connection,
        EnvironmentContext(config, script, fn=steps, destination_rev="head") as environment,
    ):
        environment.configure(connection=connection, render_as_batch=True)
        with environment.begin_transaction():
            environment.run_migrations()
