"""What differs between SQLite and PostgreSQL outside the bulk paths, each behind one name.

The other packages call these and never ask which dialect they run on
(``tests/test_layers.py`` keeps it so): SQL that compiles differently, index options, how many
threads should commit at once, and which driver errors mean "run the transaction again".
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, Index, Integer, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

_DAY = 86_400

# Commit threads per dialect. SQLite has one writer at a time, so a second thread would only
# wait for the lock; PostgreSQL inserts one group while the next is being prepared and sent,
# which measured 1.3-1.8x the batch throughput of a single thread.
_COMMIT_THREADS = {"sqlite": 1, "postgresql": 2}
# PostgreSQL's deadlock and serialisation failures: concurrent transactions that insert the same
# new keys can deadlock (the server aborts one of them), and running it again succeeds.
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})


class day_of(FunctionElement[int]):
    """``floor(ts / 86400)`` as an integer: the UTC day number of an epoch-seconds column."""

    type = Integer()
    inherit_cache = True
    name = "day_of"


@compiles(day_of)
def _day_of_default(element: day_of, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)} / {_DAY}) AS INTEGER)"


@compiles(day_of, "sqlite")
def _day_of_sqlite(element: day_of, compiler: Any, **kw: Any) -> str:
    # SQLite truncates a quotient; event times are after 1970, so truncation is the floor.
    return f"CAST({compiler.process(element.clauses, **kw)} / {_DAY} AS INTEGER)"


def partial_index(name: str, *columns: Any, where: str) -> Index:
    """An index over the rows matching ``where`` only, on both dialects."""
    return Index(name, *columns, sqlite_where=text(where), postgresql_where=text(where))


def commit_threads(engine: Engine) -> int:
    """How many threads should commit event groups at once."""
    return _COMMIT_THREADS.get(engine.dialect.name, 1)


def retryable(exc: DBAPIError) -> bool:
    """Whether the transaction failed only because a concurrent one got in its way, so that
    committing it again can succeed."""
    return getattr(exc.orig, "sqlstate", None) in _RETRY_SQLSTATES
