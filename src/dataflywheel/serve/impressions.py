"""The impression log: every served list with its model version, policy and propensities.

Writes go through a background thread in batches so serving never waits for a disk flush; a
crash can lose the last fraction of a second of impressions (never events). ``flush`` waits.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import orjson
from sqlalchemy import Connection

from dataflywheel.store.driver import insert_rows
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
BATCH = 5_000
LINGER_SECONDS = 0.05
"""How often the writer commits what was logged: at hundreds of requests a second this turns
one commit (and fsync) per request into a few per second."""


class ImpressionLog:
    """Collect impressions; a daemon thread inserts them in batches.

    :meth:`log` only appends to a deque: waking the writer per request (as a queue's put does)
    hands it the GIL on every request, which costs the serving thread more than the insert.
    The writer wakes every ``LINGER_SECONDS``, or at once for a full batch, a flush or a close.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: collections.deque[dict[str, Any]] = collections.deque()
        self._waiters: collections.deque[threading.Event] = collections.deque()
        self._wake = threading.Event()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="impressions", daemon=True)
        self._thread.start()

    def log(self, record: dict[str, Any]) -> None:
        self._pending.append(record)
        if len(self._pending) >= BATCH:
            self._wake.set()

    def flush(self) -> None:
        """Return once everything logged so far is stored (at once after :meth:`close`)."""
        if not self._thread.is_alive():
            return
        done = threading.Event()
        self._waiters.append(done)
        self._wake.set()
        while not done.wait(timeout=1.0):
            if not self._thread.is_alive():
                return

    def close(self) -> None:
        if self._thread.is_alive():
            self._closing = True
            self._wake.set()
            self._thread.join()

    def _run(self) -> None:
        while True:
            self._wake.wait(LINGER_SECONDS)
            self._wake.clear()
            closing = self._closing
            # Waiters first: every record logged before a flush began is in the deque by now.
            waiters = [self._waiters.popleft() for _ in range(len(self._waiters))]
            while self._pending:
                count = min(len(self._pending), BATCH)
                self._write([self._pending.popleft() for _ in range(count)])
            for waiter in waiters:
                waiter.set()
            if closing:
                return

    def _write(self, records: list[dict[str, Any]]) -> None:
        try:
            with self.store.write() as conn:
                insert_impressions(conn, records)
        except Exception:  # the log must keep running; events are unaffected
            log.exception("could not store %d impressions", len(records))


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
    """Driver-level inserts with the JSON columns encoded by orjson (a third of the per-row
    cost of a Core insert, which encodes each JSON value in Python); on SQLite in multi-row
    statements, which do not hand serving's event loop the GIL at every row."""
    rows = [
        tuple(
            _encode(record.get(column)) if column in JSON_COLUMNS else record.get(column)
            for column in COLUMNS
        )
        for record in records
    ]
    insert_rows(conn, "impressions", COLUMNS, rows)


def _encode(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value, option=JSON_OPTIONS).decode()
