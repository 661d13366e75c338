"""The impression log: every served list with its model version, policy and propensities.

Writes go through a background thread in batches so serving never waits for a disk flush; a
crash can lose the last fraction of a second of impressions (never events). ``flush`` waits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

import orjson
from sqlalchemy import Connection

from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
BATCH = 5_000
LINGER_SECONDS = 0.05
"""How long the writer waits for more impressions before a commit: at hundreds of requests a
second this turns one commit (and fsync) per request into a few per second."""


class ImpressionLog:
    """Queue impressions; a daemon thread inserts them in batches."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: queue.Queue[dict[str, Any] | threading.Event | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def log(self, record: dict[str, Any]) -> None:
        self._queue.put(record)

    def flush(self) -> None:
        """Return once everything logged so far is stored (at once after :meth:`close`)."""
        if not self._thread.is_alive():
            return
        done = threading.Event()
        self._queue.put(done)
        while not done.wait(timeout=1.0):
            if not self._thread.is_alive():
                return

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _run(self) -> None:
        while True:
            records, waiters, stop = self._collect(self._queue.get())
            if records:
                try:
                    with self.store.write() as conn:
                        insert_impressions(conn, records)
                except Exception:  # the log must keep running; events are unaffected
                    log.exception("could not store %d impressions", len(records))
            for waiter in waiters:
                waiter.set()
            if stop:
                return

    def _collect(
        self, item: dict[str, Any] | threading.Event | None
    ) -> tuple[list[dict[str, Any]], list[threading.Event], bool]:
        """The next batch: what arrives within ``LINGER_SECONDS`` of ``item`` (one commit for
        many requests), cut short by a full batch, a flush or a close."""
        records: list[dict[str, Any]] = []
        waiters: list[threading.Event] = []
        deadline = time.monotonic() + LINGER_SECONDS
        while True:
            if item is None:
                return records, waiters, True
            if isinstance(item, threading.Event):
                waiters.append(item)
            else:
                records.append(item)
            if len(records) >= BATCH:
                return records, waiters, False
            try:
                if waiters:
                    item = self._queue.get_nowait()
                else:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return records, waiters, False


COLUMNS = (
    "recommendation_id",
    "user_idx",
    "user_id",
    "ts",
    "model_version",
    "policy",
    "experiment_id",
    "arm",
    "item_ids",
    "scores",
    "propensities",
    "context",
)
JSON_COLUMNS = frozenset({"item_ids", "scores", "propensities", "context"})
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def insert_impressions(conn: Connection, records: list[dict[str, Any]]) -> None:
    """One driver-level executemany with the JSON columns encoded by orjson (a third of the
    per-row cost of a Core insert, which encodes each JSON value in Python)."""
    marker = "?" if conn.dialect.name == "sqlite" else "%s"
    sql = (
        f"INSERT INTO impressions ({', '.join(COLUMNS)}) "
        f"VALUES ({', '.join([marker] * len(COLUMNS))})"
    )
    rows = [
        tuple(
            _encode(record.get(column)) if column in JSON_COLUMNS else record.get(column)
            for column in COLUMNS
        )
        for record in records
    ]
    conn.exec_driver_sql(sql, rows)


def _encode(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=JSON_OPTIONS).decode()
