"""The bulk write path for events: the one place with dialect-specific SQL.

SQLite takes multi-row ``INSERT OR IGNORE`` statements; PostgreSQL one
``INSERT ... SELECT`` over a JSON array of the rows with ``ON CONFLICT DO NOTHING``.
Both skip rows whose ``event_id`` is already stored, which is what makes retries idempotent.
On PostgreSQL each insert also announces its id range (:mod:`dataflywheel.store.notify`).
"""

from __future__ import annotations

import functools
import itertools
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from sqlalchemy import Connection

from dataflywheel.store.notify import announce_events_sql, note_event_range

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
# Rows per multi-row INSERT on SQLite (events: 4 500 parameters, impressions: 6 000, of its at
# most 32 766): one statement step per chunk instead of one per row halves the cost of
# executemany and releases the GIL once per chunk, not per row.
_ROWS_PER_INSERT = 500
_SQLITE_EVENTS_HEAD = f"INSERT OR IGNORE INTO events ({_COLUMN_LIST})"
# PostgreSQL gets the whole batch as one JSON array of rows: orjson encodes it in C and the
# server unpacks it, where COPY with a Python call per row cost more than the insert itself.
_PG_INSERT = (
    f"INSERT INTO events ({_COLUMN_LIST}) SELECT r ->> 0, (r ->> 1)::integer, "
    "(r ->> 2)::integer, r ->> 3, (r ->> 4)::float8, (r ->> 5)::float8, (r ->> 6)::float8, "
    "r ->> 7, r ->> 8 FROM jsonb_array_elements(%s::jsonb) AS r "
    "ON CONFLICT (event_id) DO NOTHING"
)
# The insert announces its id range in the same statement (one round trip; the notification
# is delivered at commit all the same). A CTE the main query does not read is not run, so
# the second form joins the one-row announcement (no row when nothing was inserted).
_PG_INSERT_ANNOUNCED = (
    f"WITH new AS ({_PG_INSERT} RETURNING id), "
    "r AS (SELECT count(*) AS n, min(id) AS lo, max(id) AS hi FROM new) "
    f"SELECT n, lo, hi, CASE WHEN n > 0 THEN {announce_events_sql('lo', 'hi')} END FROM r"
)
_PG_INSERT_ANNOUNCED_IDS = (
    f"WITH new AS ({_PG_INSERT} RETURNING event_id, id), "
    f"told AS (SELECT {announce_events_sql('min(id)', 'max(id)')} FROM new HAVING count(*) > 0) "
    "SELECT new.event_id, new.id FROM new, told"
)


@dataclass(frozen=True)
class GeneratedIds:
    """Event ids ``f"{prefix}{row:012d}"`` for the given row numbers, formatted by the database
    (a million Python strings cost more than their insert)."""

    prefix: str
    rows: Sequence[int]

    def materialize(self) -> list[str]:
        prefix = self.prefix
        return [f"{prefix}{row:012d}" for row in self.rows]


@dataclass
class EventColumns:
    """Events to insert as columns (the bulk import's shape): each field holds one value per
    row (a list), or a single value shared by every row (a ``str``, ``float`` or ``None``)."""

    event_id: Sequence[str] | GeneratedIds
    user_idx: Sequence[int]
    item_idx: Sequence[int | None] | None
    type: Sequence[str] | str
    value: Sequence[float]
    ts: Sequence[float]
    received_at: Sequence[float] | float
    recommendation_id: Sequence[str | None] | None = None
    context: Sequence[str | None] | None = None

    def __len__(self) -> int:
        return len(self.user_idx)

    def rows(self) -> list[EventRow]:
        """The same events as row tuples."""
        n = len(self)
        columns: list[Any] = []
        for name in COLUMNS:
            value = getattr(self, name)
            if isinstance(value, GeneratedIds):
                value = value.materialize()
            elif value is None or isinstance(value, str | float | int):
                value = itertools.repeat(value, n)
            columns.append(value)
        return list(zip(*columns, strict=False))


# Parameters per multi-row statement of :func:`insert_event_columns` (the limit is 32 766).
_PARAMS_PER_INSERT = 6_000


@functools.lru_cache(maxsize=64)
def _sqlite_column_insert(shape: tuple[str, ...], n_rows: int) -> str:
    """``INSERT ... SELECT`` over a ``VALUES`` list of the per-row columns only.

    ``shape`` names, for each of COLUMNS, how it is bound: ``row`` (one parameter per row),
    ``const`` (one parameter for all rows) or ``id`` (the prefix as one parameter, the row
    number per row). Shared parameters are numbered ``?1..?k``; the per-row ``?`` that follow
    in the text are numbered after them (SQLite gives an unnumbered ``?`` the largest number
    so far plus one).
    """
    shared = 0
    per_row = 0
    select: list[str] = []
    for kind in shape:
        if kind == "row":
            per_row += 1
            select.append(f"column{per_row}")
        elif kind == "const":
            shared += 1
            select.append(f"?{shared}")
        else:
            shared += 1
            per_row += 1
            select.append(f"?{shared} || printf('%012d', column{per_row})")
    row = "(" + ", ".join("?" * per_row) + ")"
    return (
        f"INSERT OR IGNORE INTO events ({_COLUMN_LIST}) SELECT {', '.join(select)} "
        f"FROM (VALUES {', '.join([row] * n_rows)})"
    )


def insert_event_columns(conn: Connection, columns: EventColumns) -> int:
    """Insert events given as columns in the caller's transaction; returns how many were new.

    On SQLite only the columns that vary are bound per row, all of them laid out in one flat
    parameter list by slice assignment (no tuple per row), and generated event ids are
    formatted by SQLite. PostgreSQL takes the rows through :func:`insert_events`.
    """
    n = len(columns)
    if n == 0:
        return 0
    if conn.dialect.name != "sqlite":
        return insert_events(conn, columns.rows())
    shape: list[str] = []
    shared: list[Any] = []
    varying: list[Sequence[Any]] = []
    for name in COLUMNS:
        value = getattr(columns, name)
        if isinstance(value, GeneratedIds):
            shape.append("id")
            shared.append(value.prefix)
            varying.append(value.rows)
        elif value is None or isinstance(value, str | float | int):
            shape.append("const")
            shared.append(value)
        else:
            shape.append("row")
            varying.append(value)
    width = len(varying)
    flat: list[Any] = [None] * (n * width)
    for j, values in enumerate(varying):
        flat[j::width] = values
    step = max(1, _PARAMS_PER_INSERT // width)
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    inserted = 0
    try:
        for start in range(0, n, step):
            stop = min(n, start + step)
            cursor.execute(
                _sqlite_column_insert(tuple(shape), stop - start),
                shared + flat[start * width : stop * width],
            )
            inserted += cursor.rowcount
    finally:
        cursor.close()
    return inserted


@functools.lru_cache(maxsize=64)
def _values_sql(head: str, width: int, n_rows: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return f"{head} VALUES " + ", ".join([row] * n_rows)


def insert_rows_sqlite(cursor: Any, head: str, rows: Sequence[Sequence[Any]]) -> int:
    """``head`` (``INSERT ... INTO table (columns)``) for ``rows`` on a SQLite cursor, in
    multi-row statements of ``_ROWS_PER_INSERT``: pysqlite's ``executemany`` steps each row
    with the GIL released and taken back, which stalls every other thread of the process.
    Returns how many rows were inserted."""
    inserted = 0
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        sql = _values_sql(head, len(chunk[0]), len(chunk))
        cursor.execute(sql, list(itertools.chain.from_iterable(chunk)))
        inserted += cursor.rowcount
    return inserted


def insert_events(conn: Connection, rows: Sequence[EventRow]) -> int:
    """Insert ``rows`` in the caller's transaction; returns how many were new."""
    if not rows:
        return 0
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "sqlite":
        cursor = raw.cursor()
        try:
            return insert_rows_sqlite(cursor, _SQLITE_EVENTS_HEAD, rows)
        finally:
            cursor.close()
    with raw.cursor() as cursor:
        cursor.execute(_PG_INSERT_ANNOUNCED, (orjson.dumps(rows).decode(),))
        count, lo, hi, _ = cursor.fetchone()
    if count:
        note_event_range(conn, lo, hi)
    return int(count)


def insert_event_batches(conn: Connection, batches: Sequence[Sequence[EventRow]]) -> list[int]:
    """Insert the rows of several batches in the caller's transaction; how many of each were new.

    On PostgreSQL the whole group is one statement (a round trip per batch cost more than the
    insert for small requests) and ``RETURNING`` tells which ids were new; an id that appears in
    two batches counts for the first. SQLite, in-process, inserts batch by batch.
    """
    if conn.dialect.name == "sqlite" or len(batches) == 1:
        return [insert_events(conn, rows) for rows in batches]
    every = [row for rows in batches for row in rows]
    if not every:
        return [0] * len(batches)
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor:
        cursor.execute(_PG_INSERT_ANNOUNCED_IDS, (orjson.dumps(every).decode(),))
        returned = cursor.fetchall()
    if returned:
        ids = [row[1] for row in returned]
        note_event_range(conn, min(ids), max(ids))
    new = {event_id for event_id, _ in returned}
    counts = []
    for rows in batches:
        mine = {row[0] for row in rows if row[0] in new}
        new -= mine
        counts.append(len(mine))
    return counts


def insert_keys(conn: Connection, table: str, column: str, keys: Sequence[str], now: float) -> int:
    """Create user or item rows for ``keys`` that do not exist yet (bulk path of id mapping);
    returns how many were created.

    One statement for all keys, sorted so that concurrent writers (several server processes on
    PostgreSQL) take the unique-index locks in the same order and cannot deadlock.
    """
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        _insert_new_keys(cursor, conn.dialect.name, table, column, keys, now)
        return max(int(cursor.rowcount), 0)
    finally:
        cursor.close()


def _insert_new_keys(
    cursor: Any,
    dialect: str,
    table: str,
    column: str,
    keys: Sequence[str],
    now: float,
    returning: str = "",
) -> None:
    """One INSERT of the rows of ``keys`` (sorted) that do not exist, ``returning`` appended."""
    ordered = sorted(keys)
    if dialect == "sqlite":
        # ``WHERE true`` tells SQLite's parser that ON CONFLICT is the upsert clause.
        cursor.execute(
            f"INSERT INTO {table} ({column}, hidden, created_at, updated_at) "
            f"SELECT value, false, ?, ? FROM json_each(?) WHERE true "
            f"ON CONFLICT ({column}) DO NOTHING{returning}",
            (now, now, orjson.dumps(ordered).decode()),
        )
    else:
        cursor.execute(
            f"INSERT INTO {table} ({column}, hidden, created_at, updated_at) "
            f"SELECT k, false, %s, %s FROM unnest(%s::text[]) AS k "
            f"ON CONFLICT ({column}) DO NOTHING{returning}",
            (now, now, ordered),
        )


# SQLite returns rows from an upsert with RETURNING since 3.35.
_SQLITE_RETURNING = sqlite3.sqlite_version_info >= (3, 35)


def create_keys(
    conn: Connection, table: str, column: str, keys: Sequence[str], now: float
) -> dict[str, int]:
    """Dense ids of ``keys``, creating the rows of those not stored yet.

    The insert returns the ids it created, so only keys that already existed are looked up
    afterwards (on a fresh store: one statement instead of two, and no second pass over them).
    Keys are inserted in sorted order, like :func:`insert_keys`.
    """
    if not keys:
        return {}
    if conn.dialect.name == "sqlite" and not _SQLITE_RETURNING:
        insert_keys(conn, table, column, keys, now)
        return select_keys(conn, table, column, keys)
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        returning = f" RETURNING {column}, idx"
        _insert_new_keys(cursor, conn.dialect.name, table, column, keys, now, returning)
        found: dict[str, int] = dict(cursor.fetchall())
    finally:
        cursor.close()
    if len(found) < len(keys):
        found.update(select_keys(conn, table, column, [k for k in keys if k not in found]))
    return found


def read_columns(conn: Connection, sql: str, width: int, chunk: int = 200_000) -> np.ndarray:
    """All rows of a numeric query as one float64 array (rows × ``width``), read in chunks.

    SQLite streams through the DB-API cursor; PostgreSQL through ADBC as Arrow (a plain
    psycopg cursor would first hold every row as Python tuples), or through a binary COPY
    when the ADBC driver cannot be imported (no wheel for the platform).
    """
    if conn.dialect.name == "sqlite":
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql)
        parts = []
        while rows := cursor.fetchmany(chunk):
            parts.append(np.array(rows, dtype=np.float64))
        cursor.close()
        return np.concatenate(parts) if parts else np.zeros((0, width))
    try:
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError:
        return read_columns_copy(conn, sql, width)
    url = conn.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with adbc.connect(url) as pg, pg.cursor() as cursor:
        cursor.execute(sql)
        table = cursor.fetch_arrow_table()
    if table.num_rows == 0:
        return np.zeros((0, width))
    return np.column_stack(
        [table.column(i).to_numpy().astype(np.float64) for i in range(table.num_columns)]
    )


# PostgreSQL's binary COPY header: signature (11 bytes), flags (4), extension length (4, zero).
_COPY_HEADER = 19


def read_columns_copy(conn: Connection, sql: str, width: int) -> np.ndarray:
    """:func:`read_columns` on PostgreSQL through psycopg's ``COPY ... TO STDOUT`` (binary).

    Every column is cast to float8 and NULL becomes NaN, so each row has the same layout
    (a field count, then a length and a big-endian float8 per field) and numpy reads the
    whole stream as one record array, in the caller's transaction. About 1.5 times the
    ADBC read on a million events (BENCHMARKS.md).
    """
    names = ", ".join(f"c{i}" for i in range(width))
    floats = ", ".join(f"coalesce(q.c{i}::float8, 'NaN')" for i in range(width))
    copy = f"COPY (SELECT {floats} FROM ({sql}) AS q({names})) TO STDOUT (FORMAT binary)"
    raw: Any = conn.connection.dbapi_connection
    with raw.cursor() as cursor, cursor.copy(copy) as stream:
        data = b"".join(stream)
    fields = [
        (f"len{i}", ">i4") if j == 0 else (f"c{i}", ">f8") for i in range(width) for j in (0, 1)
    ]
    row = np.dtype([("fields", ">i2"), *fields])
    # The stream ends with a two-byte trailer (-1).
    count = (len(data) - _COPY_HEADER - 2) // row.itemsize
    records = np.frombuffer(data, dtype=row, count=count, offset=_COPY_HEADER)
    if count == 0:
        return np.zeros((0, width))
    return np.column_stack([records[f"c{i}"].astype(np.float64) for i in range(width)])


def select_keys(conn: Connection, table: str, column: str, keys: Sequence[str]) -> dict[str, int]:
    """Dense ids of ``keys`` that exist in ``table`` (raw DB-API: this is on the ingest path)."""
    raw: Any = conn.connection.dbapi_connection
    cursor = raw.cursor()
    try:
        if conn.dialect.name == "sqlite":
            cursor.execute(
                f"SELECT {column}, idx FROM {table} "
                f"WHERE {column} IN (SELECT value FROM json_each(?))",
                (orjson.dumps(list(keys)).decode(),),
            )
        else:
            cursor.execute(
                f"SELECT {column}, idx FROM {table} WHERE {column} = ANY(%s)", (list(keys),)
            )
        return dict(cursor.fetchall())
    finally:
        cursor.close()
