"""The bulk write path for events: the one place with dialect-specific SQL.

SQLite takes a prepared ``INSERT OR IGNORE`` through ``executemany``; PostgreSQL streams the rows
with ``COPY`` into a temporary table and moves them with ``INSERT ... ON CONFLICT DO NOTHING``.
Both skip rows whose ``event_id`` is already stored, which is what makes retries idempotent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection

EventRow = tuple[str, int, int | None, str, float, float, float, str | None, str | None]
COLUMNS = (
    "event_id",
    "user_idx",
    "item_idx",
    "type",
    "value",
    "ts",
    "received_at",
    "recommendation_id",
    "context",
)
_COLUMN_LIST = ", ".join(COLUMNS)
# SQLite accepts at most 32 766 bound parameters; stay well below for IN lists.
_IN_CHUNK = 900


def insert_events(conn: Connection, rows: Sequence[EventRow]) -> int:
    """Insert ``rows`` in the caller's transaction; returns how many were new."""
    if not rows:
        return 0
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        cursor = raw.cursor()
        placeholders = ", ".join("?" * len(COLUMNS))
        cursor.executemany(
            f"INSERT OR IGNORE INTO events ({_COLUMN_LIST}) VALUES ({placeholders})", rows
        )
        return int(cursor.rowcount)
    with raw.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE IF NOT EXISTS events_incoming (event_id text, "
            "user_idx integer, item_idx integer, type text, value float8, ts float8, "
            "received_at float8, recommendation_id text, context text) ON COMMIT DELETE ROWS"
        )
        with cursor.copy(f"COPY events_incoming ({_COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        cursor.execute(
            f"INSERT INTO events ({_COLUMN_LIST}) SELECT {_COLUMN_LIST} FROM events_incoming "
            "ON CONFLICT (event_id) DO NOTHING"
        )
        return int(cursor.rowcount)


def insert_keys(conn: Connection, table: str, column: str, keys: Sequence[str], now: float) -> None:
    """Create user or item rows for ``keys`` that do not exist yet (bulk path of id mapping)."""
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = (
        f"INSERT INTO {table} ({column}, hidden, created_at, updated_at) "
        f"VALUES ({marker}, false, {marker}, {marker}) ON CONFLICT ({column}) DO NOTHING"
    )
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        cursor.executemany(sql, [(key, now, now) for key in keys])
    finally:
        cursor.close()


def read_columns(conn: Connection, sql: str, width: int, chunk: int = 200_000) -> np.ndarray:
    """All rows of a numeric query as one float64 array (rows × ``width``), read in chunks.

    SQLite streams through the DB-API cursor; PostgreSQL through ADBC as Arrow (a plain
    psycopg cursor would first hold every row as Python tuples).
    """
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql)
        parts = []
        while rows := cursor.fetchmany(chunk):
            parts.append(np.array(rows, dtype=np.float64))
        cursor.close()
        return np.concatenate(parts) if parts else np.zeros((0, width))
    import adbc_driver_postgresql.dbapi as adbc

    url = conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(url) as pg, pg.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    if table.num_rows == 0:
        return np.zeros((0, width))
    return np.column_stack(
        [table.column(i).to_numpy().astype(np.float64) for i in range(table.num_columns)]
    )


def select_keys(conn: Connection, table: str, column: str, keys: Sequence[str]) -> dict[str, int]:
    """Dense ids of ``keys`` that exist in ``table`` (raw DB-API: this is on the ingest path)."""
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    found: dict[str, int] = {}
    try:
        for start in range(0, len(keys), _IN_CHUNK):
            chunk = keys[start : start + _IN_CHUNK]
            cursor.execute(
                f"SELECT {column}, idx FROM {table} WHERE {column} IN "
                f"({', '.join([marker] * len(chunk))})",
                list(chunk),
            )
            found.update(cursor.fetchall())
    finally:
        cursor.close()
    return found
