"""The impression log: every served list with its model version, policy and propensities.

Writes go through a background thread in batches so serving never waits for a disk flush; a
crash can lose the last fraction of a second of impressions (never events). ``flush`` waits.
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Any

from sqlalchemy import insert

from dataflywheel.store import schema
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
BATCH = 5_000


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
            item = self._queue.get()
            records: list[dict[str, Any]] = []
            waiters: list[threading.Event] = []
            stop = False
            while True:
                if item is None:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)
                else:
                    records.append(item)
                if len(records) >= BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if records:
                try:
                    with self.store.write() as conn:
                        conn.execute(insert(schema.impressions), records)
                except Exception:  # the log must keep running; events are unaffected
                    log.exception("could not store %d impressions", len(records))
            for waiter in waiters:
                waiter.set()
            if stop:
                return
