"""Each user's interaction history as the serving process knows it: snapshot plus live tail.

The champion's snapshot gives every user's events up to its watermark; newer events are read
incrementally (``events.id > last seen``) on each request, so a click counts at once without a
retrain and without an index on users in the hot events table.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.snapshot import EventArrays, events_query, read_events
from dataflywheel.store.store import Store


class Histories:
    """Events grouped by user (sorted arrays + offsets) with a live tail appended per user."""

    def __init__(self, store: Store, events: EventArrays, watermark: int) -> None:
        self.store = store
        order = np.argsort(events.user_idx, kind="stable")
        self._users = events.user_idx[order]
        self._items = events.item_idx[order]
        self._weights = events.weight[order]
        self._times = events.timestamp[order]
        self._tail: dict[int, list[tuple[int, float, float]]] = {}
        self._tail_item_counts: dict[int, float] = {}
        self.watermark = watermark
        self._query = events_query(store.settings)
        self._lock = threading.Lock()

    def catch_up(self) -> None:
        """Append events stored since the last call (cheap when there are none)."""
        with self._lock:
            fresh, last = read_events(self.store, after=self.watermark, query=self._query)
            for user, item, weight, ts in zip(
                fresh.user_idx.tolist(),
                fresh.item_idx.tolist(),
                fresh.weight.tolist(),
                fresh.timestamp.tolist(),
                strict=True,
            ):
                self._tail.setdefault(user, []).append((item, weight, ts))
                if weight > 0:
                    self._tail_item_counts[item] = self._tail_item_counts.get(item, 0.0) + 1.0
            self.watermark = last

    def events_of(self, user: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(items, weights, timestamps) of ``user``, snapshot first, then the tail."""
        lo, hi = np.searchsorted(self._users, [user, user + 1])
        items, weights, times = self._items[lo:hi], self._weights[lo:hi], self._times[lo:hi]
        tail = self._tail.get(user)
        if tail:
            extra = np.array(tail, dtype=np.float64)
            items = np.concatenate([items, extra[:, 0].astype(np.int64)])
            weights = np.concatenate([weights, extra[:, 1]])
            times = np.concatenate([times, extra[:, 2]])
        return items, weights, times

    def known(self, user: int) -> bool:
        lo, hi = np.searchsorted(self._users, [user, user + 1])
        return bool(hi > lo or self._tail.get(user))

    def row(
        self, user: int, n_items: int, matrix_params: dict[str, Any]
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        """The model's input row for ``user`` and the ids of every item the user acted on."""
        items, weights, times = self.events_of(user)
        consumed = np.unique(items[weights != 0])
        inside = items < n_items
        row = build_matrix(
            np.zeros(int(inside.sum()), dtype=np.int64),
            items[inside],
            weights[inside],
            times[inside],
            n_users=1,
            n_items=n_items,
            **matrix_params,
        )
        return row, consumed

    def tail_popularity(self, size: int) -> np.ndarray:
        """Positive interactions per item since the snapshot (for cold start)."""
        counts = np.zeros(size)
        for item, count in self._tail_item_counts.items():
            if item < size:
                counts[item] = count
        return counts
