"""Has anything been committed since I last looked? What each store can answer, and how cheaply.

- SQLite serialises its writers, so event ids become visible in id order, and a connection's
  ``PRAGMA data_version`` changes whenever another connection commits (a few microseconds to
  read): :func:`ids_visible_in_order`, :func:`change_probe`.
- PostgreSQL's concurrent writers can commit a lower id after a higher one. Writers announce
  each insert's id range instead (:mod:`dataflywheel.store.notify`), and a reader reads exactly
  those ranges: :class:`RangeQuery`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine

from dataflywheel.store.driver import run


def ids_visible_in_order(engine: Engine) -> bool:
    """Whether an event id becomes visible only after every lower one: then the events after
    the highest id read are all that is new (SQLite). Otherwise a lower id can be committed
    after a higher one was read (PostgreSQL)."""
    return engine.dialect.name == "sqlite"


class ChangeProbe:
    """A connection of its own to a SQLite file whose :meth:`version` changes whenever another
    connection commits (``PRAGMA data_version``)."""

    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)

    def version(self) -> int:
        version: int = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return version

    def close(self) -> None:
        self._conn.close()


def change_probe(engine: Engine) -> ChangeProbe | None:
    """A probe of the store behind ``engine``, or None where none is cheap: PostgreSQL
    announces its commits instead, and an in-memory SQLite database has no file to open."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return None
    return ChangeProbe(path)


class RangeQuery:
    """The rows of ``columns`` (a select over ``events``, without WHERE) whose id lies in any
    of a set of ranges, in id order: one index range scan per range (PostgreSQL)."""

    def __init__(self, engine: Engine, columns: Any) -> None:
        self.engine = engine
        body = str(
            columns.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True})
        ).replace("%", "%%")
        self.sql = (
            "SELECT q.* FROM unnest(%s::bigint[], %s::bigint[]) AS r(lo, hi) "
            f"CROSS JOIN LATERAL ({body} WHERE events.id BETWEEN r.lo AND r.hi) AS q "
            "ORDER BY 1"
        )

    def rows(self, ranges: Sequence[tuple[int, int]]) -> Sequence[Any]:
        """The rows in the inclusive ``(lo, hi)`` ranges, read through a raw connection."""
        lows, highs = zip(*ranges, strict=True)
        return run(self.engine, self.sql, (list(lows), list(highs)))
