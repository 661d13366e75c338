"""Each user's interaction history as the serving process knows it: snapshot plus live tail.

The champion's snapshot gives every user's events up to its watermark; newer events are read
incrementally (``events.id > last seen``) on each request, so a click counts at once without a
retrain and without an index on users in the hot events table.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataflywheel.learn.matrix import decay_weights, recency_weights
from dataflywheel.learn.snapshot import EventArrays
from dataflywheel.serve.tail import EventTail
from dataflywheel.store.store import Store

ROW_CACHE_SIZE = 50_000
"""Users whose model input rows are kept (a few kB each on MovieLens-like histories)."""


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
        self._rows: dict[tuple[int, int, tuple[Any, ...]], tuple[int, sp.csr_matrix, np.ndarray]]
        self._rows = {}
        self.watermark = watermark
        self._tail_reader = EventTail(store, watermark)
        self._lock = threading.Lock()
        self._read_started = -np.inf
        self._erasures = 0  # part of every cached row's version: an erasure outdates them all

    def close(self) -> None:
        self._tail_reader.close()

    def catch_up(self) -> None:
        """Append events stored before this call; concurrent callers share one read.

        A read that began after this call arrived already sees every event acknowledged
        before it, so callers queued behind it return without another query.
        """
        arrived = time.monotonic()
        with self._lock:
            if self._read_started >= arrived:
                return
            self._read_started = time.monotonic()
            fresh, last = self._tail_reader.read()
            if not len(fresh):
                return
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
        """The model's input row for ``user`` and the ids of every item the user acted on.

        The same weights as :func:`build_matrix` gives the user's row in training (decay,
        recency, sum per item, clipped at 0), computed directly for one user; kept until the
        user's next event, since most requests come from users who did nothing new since.
        """
        key = (user, n_items, tuple(sorted(matrix_params.items())))
        version = len(self._tail.get(user, ())) + (self._erasures << 32)
        cached = self._rows.get(key)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        row, consumed = self._row(user, n_items, matrix_params)
        if len(self._rows) >= ROW_CACHE_SIZE:
            self._rows.clear()
        self._rows[key] = (version, row, consumed)
        return row, consumed

    def _row(
        self, user: int, n_items: int, matrix_params: dict[str, Any]
    ) -> tuple[sp.csr_matrix, np.ndarray]:
        items, weights, times = self.events_of(user)
        consumed = np.unique(items[weights != 0])
        inside = items < n_items
        items, weights, times = items[inside], weights[inside], times[inside]
        users = np.zeros(items.size, dtype=np.int64)
        if matrix_params.get("half_life_days") is not None:
            weights = decay_weights(
                users,
                weights,
                times,
                half_life_days=matrix_params["half_life_days"],
                now=matrix_params.get("now"),
                reference=matrix_params.get("reference", "global"),
            )
        if matrix_params.get("recent_half_life") is not None:
            weights = weights * recency_weights(
                users,
                times,
                half_life=matrix_params["recent_half_life"],
                floor=matrix_params.get("recent_floor", 0.0),
            )
        columns, position = np.unique(items, return_inverse=True)
        sums = np.bincount(position, weights=weights, minlength=columns.size)
        positive = sums > 0
        row = sp.csr_matrix(
            (
                sums[positive].astype(np.float32),
                columns[positive].astype(np.int32),
                np.array([0, int(positive.sum())], dtype=np.int32),
            ),
            shape=(1, n_items),
        )
        return row, consumed

    def forget(self, user: int) -> None:
        """Drop an erased user's events: their next row is empty (a cold start), and no item
        counts as consumed. Weights are zeroed in place, so a request reading the arrays at
        the same time never sees another user's slice."""
        with self._lock:
            lo, hi = np.searchsorted(self._users, [user, user + 1])
            self._weights[lo:hi] = 0.0
            for item, weight, _ in self._tail.pop(user, ()):
                if weight > 0:
                    self._tail_item_counts[item] -= 1.0
            self._erasures += 1
            self._rows.clear()

    def forget_item(self, item: int) -> None:
        """Drop an erased item from every user's history (it no longer shapes their rows)."""
        with self._lock:
            self._weights[self._items == item] = 0.0
            for user, tail in list(self._tail.items()):
                self._tail[user] = [event for event in tail if event[0] != item]
            self._tail_item_counts.pop(item, None)
            self._erasures += 1
            self._rows.clear()

    def popularity_among(self, users: np.ndarray, size: int) -> np.ndarray:
        """Positive interactions per item of the given users (snapshot and tail)."""
        chosen = np.isin(self._users, users) & (self._weights > 0)
        items = self._items[chosen]
        counts = np.bincount(items[items < size], minlength=size).astype(float)
        for user in users.tolist():
            for item, weight, _ in self._tail.get(user, ()):
                if weight > 0 and item < size:
                    counts[item] += 1.0
        return counts

    def tail_popularity(self, size: int) -> np.ndarray:
        """Positive interactions per item since the snapshot (for cold start)."""
        counts = np.zeros(size)
        for item, count in self._tail_item_counts.items():
            if item < size:
                counts[item] = count
        return counts
