"""Onboarding from user attributes: what is popular among users who share a declared attribute
value (setting ``segment_attributes``, e.g. ``segment``, ``country``), for a user with
attributes but no events yet, instead of what is popular with everyone.

The users' attributes are read from the store at most every ``REFRESH_SECONDS``; so are the
item counts of each segment, from the serving histories (snapshot plus live tail).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.serve.history import Histories
from dataflywheel.store import schema
from dataflywheel.store.store import Store

REFRESH_SECONDS = 60.0
MIN_EVENTS = 1
"""A segment whose members have fewer positive events than this falls back to everyone."""


def _value(value: Any) -> str | None:
    """A segment value: strings, numbers and booleans (not lists or objects)."""
    if isinstance(value, bool | int | float | str):
        return repr(value)
    return None


class Segments:
    """Per-segment item popularity for one serving process."""

    def __init__(self, store: Store, keys: list[str]) -> None:
        self.store = store
        self.keys = keys
        self._members: dict[tuple[str, str], np.ndarray] = {}
        self._of_user: dict[int, dict[str, str]] = {}
        self._read_at = -np.inf
        # Keyed by a weak reference to the champion's histories: a freed object's id() can be
        # given to the next champion's, and a strong one would keep its events in memory.
        self._counts: dict[tuple[str, str], tuple[float, weakref.ref[Histories], np.ndarray]] = {}
        self._lock = threading.Lock()

    def popularity(self, user: int, histories: Histories, size: int) -> np.ndarray | None:
        """Item counts among the users of ``user``'s first declared segment with events, or
        None (no segment attribute, or nobody in it has acted yet)."""
        if not self.keys:
            return None
        self._refresh()
        declared = self._of_user.get(user)
        if declared is None:
            declared = self._read_user(user)
        for key in self.keys:
            value = declared.get(key)
            if value is None:
                continue
            counts = self._segment_counts((key, value), histories, size)
            if counts.sum() >= MIN_EVENTS:
                return counts
        return None

    def _refresh(self) -> None:
        """Re-read every user's segment values when the last read is older than the period."""
        if time.monotonic() - self._read_at < REFRESH_SECONDS:
            return
        with self._lock:
            if time.monotonic() - self._read_at < REFRESH_SECONDS:
                return
            u = schema.users.c
            members: dict[tuple[str, str], list[int]] = defaultdict(list)
            of_user: dict[int, dict[str, str]] = {}
            with self.store.read() as conn:
                rows = conn.execute(select(u.idx, u.attributes).where(u.attributes.is_not(None)))
                for idx, attributes in rows:
                    declared = self._declared(attributes)
                    if declared:
                        of_user[idx] = declared
                        for pair in declared.items():
                            members[pair].append(idx)
            self._members = {pair: np.asarray(ids, dtype=np.int64) for pair, ids in members.items()}
            self._of_user, self._counts = of_user, {}
            self._read_at = time.monotonic()

    def _declared(self, attributes: Any) -> dict[str, str]:
        if not isinstance(attributes, dict):
            return {}
        found = {key: _value(attributes.get(key)) for key in self.keys}
        return {key: value for key, value in found.items() if value is not None}

    def _read_user(self, user: int) -> dict[str, str]:
        """A user created since the last read (onboarded a moment ago): one row, remembered
        until the next full read; their segment's members are as of that read."""
        u = schema.users.c
        with self.store.read() as conn:
            attributes = conn.execute(select(u.attributes).where(u.idx == user)).scalar()
        declared = self._declared(attributes)
        self._of_user[user] = declared
        return declared

    def _segment_counts(self, pair: tuple[str, str], histories: Histories, size: int) -> np.ndarray:
        now = time.monotonic()
        cached = self._counts.get(pair)
        if cached is not None and now - cached[0] < REFRESH_SECONDS and cached[1]() is histories:
            counts = cached[2]
        else:
            members = self._members.get(pair, np.zeros(0, dtype=np.int64))
            counts = histories.popularity_among(members, size)
            self._counts[pair] = (now, weakref.ref(histories), counts)
        out = np.zeros(size)
        width = min(size, counts.size)
        out[:width] = counts[:width]
        return out
