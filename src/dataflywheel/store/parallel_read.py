"""Reading a long run of SQLite rows in several processes at once.

SQLite steps a statement on one core, and the ``sqlite3`` module builds a Python tuple per row
while holding the GIL, so a snapshot of tens of millions of events is bound by one core. Each
child process reads one slice of the id range through its own read-only connection and sends
back a float64 table; the parent concatenates the slices in order.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from sqlalchemy import Engine

CHUNK = 200_000


def slice_source(engine: Engine) -> str | None:
    """The SQLite file that child processes can each read a slice of, or None where a read
    cannot be split over processes (PostgreSQL, an in-memory database)."""
    path = engine.url.database
    if engine.dialect.name != "sqlite" or not path or path == ":memory:":
        return None
    return path


def _read_slice(path: str, sql: str, width: int) -> np.ndarray:
    """All rows of ``sql`` as a float64 table (runs in a child process)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = conn.execute(sql)
        parts = [
            np.array(rows, dtype=np.float64) for rows in iter(lambda: cursor.fetchmany(CHUNK), [])
        ]
    finally:
        conn.close()
    return np.concatenate(parts) if parts else np.zeros((0, width))


def read_slices(path: str, statements: Sequence[str], width: int) -> np.ndarray:
    """The rows of every statement, in the order given, each read by its own process.

    Processes are spawned (never forked: the caller may run threads that hold locks).
    """
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=len(statements), mp_context=context) as pool:
        tables = list(
            pool.map(_read_slice, [path] * len(statements), statements, [width] * len(statements))
        )
    return np.concatenate(tables) if tables else np.zeros((0, width))
