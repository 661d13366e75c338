"""Statements run on the driver's own cursor, where SQLAlchemy's per-call cost dominates.

On the serving tail's path SQLAlchemy's execution costs about 30 times the query itself, and a
rollup refresh moves many small rows; these helpers hand plain tuples to the DB-API cursor of
whichever driver the store uses, with its parameter style.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Engine

from dataflywheel.store.bulk import insert_rows_sqlite


def run(engine: Engine, sql: str, params: Any) -> Sequence[Any]:
    """The rows of driver SQL ``sql`` on a pooled raw connection (autocommit reads)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(sql, params)
        rows = cursor.fetchall()
        cursor.close()
    finally:
        connection.close()
    return rows


class DriverQuery:
    """A statement compiled once for ``engine``'s driver and run with new values for its bind
    parameters (``defaults`` for those not given) by :func:`run`."""

    def __init__(self, engine: Engine, statement: Any, defaults: Mapping[str, Any]) -> None:
        self.engine = engine
        compiled = statement.compile(dialect=engine.dialect)
        self.sql = str(compiled)
        self._params = compiled.construct_params(dict(defaults))
        self._order = compiled.positiontup

    def rows(self, **values: Any) -> Sequence[Any]:
        merged = {**self._params, **values}
        params: Any = merged if self._order is None else [merged[n] for n in self._order]
        return run(self.engine, self.sql, params)


def fetch_rows(conn: Connection, statement: Any) -> list[tuple[Any, ...]]:
    """Rows of ``statement`` as plain tuples straight from the driver, in ``conn``'s
    transaction. Bound values are inlined (numbers only), so one SQL string serves both
    dialects."""
    sql = str(statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def insert_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Insert plain tuples (one value per column, in order) in ``conn``'s transaction: multi-row
    statements on SQLite, whose ``executemany`` hands the GIL over at every row
    (:func:`~dataflywheel.store.bulk.insert_rows_sqlite`), ``executemany`` on PostgreSQL."""
    if not rows:
        return
    head = f"INSERT INTO {table} ({', '.join(columns)})"
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if conn.dialect.name == "sqlite":
            insert_rows_sqlite(cursor, head, rows)
        else:
            cursor.executemany(f"{head} VALUES ({', '.join(['%s'] * len(columns))})", rows)
    finally:
        cursor.close()
