"""The live tail of serving: the events committed after a champion's snapshot, each read once.

Serving folds every user's newest events in at once, so each request asks the tail what is new
since the last one, and that must cost nothing when nothing changed.

- SQLite serialises its writers, so ids become visible in order: the tail reads ``id > last``
  after the store's change probe (:mod:`dataflywheel.store.changes`) saw a commit (a few
  microseconds).
- PostgreSQL's concurrent writers can commit a lower id after a higher one, so "after the
  highest id read" would skip the late one forever. Writers announce each insert's id range at
  commit (:mod:`dataflywheel.store.notify`), and the tail reads exactly the announced ranges,
  keeping the set of ids it has read so that overlapping ranges count each event once. A
  safety catch-up every :data:`CATCHUP_SECONDS` reads everything above the highest id read and
  the recent holes below it, so an event whose notification was lost (the listening connection
  was down, a writer that does not announce) is still read. Sequence values consumed by a
  duplicate (``ON CONFLICT DO NOTHING``) or a rolled-back insert leave holes that never fill:
  a hole is looked for during :data:`HOLE_GRACE_SECONDS`, and forgotten after
  :data:`HOLE_FORGET_SECONDS` (an announced event is read until then).
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.learn.snapshot import EventArrays, events_query, weight_expression
from dataflywheel.store import notify, schema
from dataflywheel.store.changes import ChangeProbe, RangeQuery, change_probe, ids_visible_in_order
from dataflywheel.store.driver import DriverQuery
from dataflywheel.store.store import Store

CATCHUP_SECONDS = 2.0
HOLE_GRACE_SECONDS = 60.0
HOLE_FORGET_SECONDS = 900.0
MAX_HOLES_READ = 500
"""Holes looked for in one catch-up (the youngest): bounds the statement's size."""
MAX_PENDING = 1_000
"""Announced ranges kept for the next read before they are joined into one."""
_TOP = 2**62

_NO_EVENTS = EventArrays(
    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
)


class IdSet:
    """Disjoint sorted id intervals, each with the time its gap below was first seen.

    The gap below interval ``i`` (between ``ends[i-1]`` and ``starts[i]``) is a hole: ids that
    were not read although a higher one was, since ``born[i]``.
    """

    def __init__(self, upto: int, now: float) -> None:
        self.starts = [0]
        self.ends = [upto]
        self.born = [now]

    @property
    def top(self) -> int:
        return self.ends[-1]

    def missing(self, ids: np.ndarray) -> np.ndarray:
        """A mask of the ``ids`` not in the set."""
        starts = np.asarray(self.starts)
        at = np.searchsorted(starts, ids, side="right") - 1
        inside = (at >= 0) & (ids <= np.asarray(self.ends)[np.maximum(at, 0)])
        return ~inside

    def add(self, ids: np.ndarray, now: float) -> None:
        """Add sorted ids that are not in the set."""
        if not len(ids):
            return
        breaks = np.flatnonzero(np.diff(ids) != 1) + 1
        for run in np.split(ids, breaks):
            self._add_run(int(run[0]), int(run[-1]), now)

    def _add_run(self, lo: int, hi: int, now: float) -> None:
        i = bisect.bisect_right(self.starts, lo)  # the run lies in the gap below interval i
        # Above everything, a new gap opens below the run (unless adjacent).
        born = now if i == len(self.starts) else self.born[i]
        joins_below = self.ends[i - 1] + 1 == lo
        joins_above = i < len(self.starts) and hi + 1 == self.starts[i]
        if joins_below and joins_above:
            self.ends[i - 1] = self.ends[i]
            del self.starts[i], self.ends[i], self.born[i]
        elif joins_below:
            self.ends[i - 1] = hi
        elif joins_above:
            self.starts[i] = lo
        else:
            self.starts.insert(i, lo)
            self.ends.insert(i, hi)
            self.born.insert(i, born)

    def holes(self, since: float) -> list[tuple[int, int]]:
        """The holes first seen at ``since`` or later, youngest first."""
        found = [
            (self.ends[i - 1] + 1, self.starts[i] - 1)
            for i in range(len(self.starts) - 1, 0, -1)
            if self.born[i] >= since
        ]
        return found

    def forget(self, before: float) -> None:
        """Fill the holes first seen before ``before``: ids there will never be read."""
        keep = [0] + [i for i in range(1, len(self.starts)) if self.born[i] >= before]
        if len(keep) == len(self.starts):
            return
        starts, ends, born = [], [], []
        for n, i in enumerate(keep):
            stop = keep[n + 1] - 1 if n + 1 < len(keep) else len(self.starts) - 1
            starts.append(self.starts[i])
            ends.append(self.ends[stop])
            born.append(self.born[i])
        self.starts, self.ends, self.born = starts, ends, born


class EventTail:
    """The weighted item events committed after ``watermark`` that were not read yet.

    Reads go through a plain driver cursor (:mod:`dataflywheel.store.driver`): on this path
    SQLAlchemy's execution costs about 30 times the query itself.
    """

    def __init__(self, store: Store, watermark: int) -> None:
        self.store = store
        self.top = watermark
        self._probe: ChangeProbe | None = None
        self._version: int | None = None
        self._hub: notify.Hub | None = None
        self._ordered = ids_visible_in_order(store.engine)
        if self._ordered:
            self._init_ordered(store)
        else:
            self._init_announced(store, watermark)

    def close(self) -> None:
        """Stop listening and close the probe; later reads query every time."""
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close()
        hub, self._hub = self._hub, None
        if hub is not None:
            hub.unsubscribe(self)

    def read(self) -> tuple[EventArrays, int]:
        """The item events not read yet (in id order) and the highest id read so far."""
        if self._ordered:
            return self._read_ordered(), self.top
        return self._read_announced(), self.top

    # Ids visible in order (SQLite) --------------------------------------------------------

    def _init_ordered(self, store: Store) -> None:
        self._after = DriverQuery(
            store.engine, events_query(store.settings), {"after": 0, "upto": _TOP}
        )
        self._probe = change_probe(store.engine)
        self._covered = 2**63
        """Every event after this id was read at ``_version`` (none read yet: no id)."""

    def _read_ordered(self) -> EventArrays:
        probe = self._probe
        if probe is not None:
            # Read before the query: a commit landing in between shows at the next poll.
            version = probe.version()
            if version == self._version and self.top >= self._covered:
                return _NO_EVENTS
            self._version = version
        table = _table(self._after.rows(after=self.top))
        if len(table):
            self.top = int(table[-1, 0])
        self._covered = self.top
        return _arrays(table)

    # Ids announced at commit (PostgreSQL) -------------------------------------------------

    def _init_announced(self, store: Store, watermark: int) -> None:
        e = schema.events.c
        # Every event, user-level ones included, so that their ids do not look like holes.
        self._ranges = RangeQuery(
            store.engine,
            select(e.id, e.user_idx, e.item_idx, weight_expression(store.settings), e.ts),
        )
        now = time.monotonic()
        self._ids = IdSet(watermark, now)
        self._pending: list[tuple[int, int]] = []
        self._pending_lock = threading.Lock()
        self._catchup_at = now  # the first read catches up: the listener may not be up yet
        self._hub = notify.listener(store.engine)
        if self._hub is not None:
            self._hub.subscribe(self)

    def on_events(self, lo: int, hi: int) -> None:
        """Called by the listener thread: ids ``lo..hi`` were committed."""
        with self._pending_lock:
            pending = self._pending
            if pending and pending[-1][0] <= lo <= pending[-1][1] + 1:
                pending[-1] = (pending[-1][0], max(hi, pending[-1][1]))
            elif len(pending) >= MAX_PENDING:
                # Nobody read for a while: one range over all (ids read before are skipped).
                pending[:] = [
                    (min(lo, *(r[0] for r in pending)), max(hi, *(r[1] for r in pending)))
                ]
            else:
                pending.append((lo, hi))

    def on_change(self, topic: str) -> None:
        if topic == notify.ANY:  # the listener (re)connected: notifications may be missing
            self._catchup_at = -np.inf

    def _read_announced(self) -> EventArrays:
        now = time.monotonic()
        with self._pending_lock:
            ranges, self._pending = self._pending, []
        hub = self._hub
        due = now >= self._catchup_at or hub is None or not hub.listening.is_set()
        if not ranges and not due:
            return _NO_EVENTS
        ids = self._ids
        if due:
            self._catchup_at = now + CATCHUP_SECONDS
            ids.forget(now - HOLE_FORGET_SECONDS)
            ranges += ids.holes(now - HOLE_GRACE_SECONDS)[:MAX_HOLES_READ]
            ranges.append((ids.top + 1, _TOP))
        if not ranges:
            return _NO_EVENTS
        table = _table(self._ranges.rows(_merged(ranges)))
        if not len(table):
            return _NO_EVENTS
        found = table[:, 0].astype(np.int64)
        fresh = ids.missing(found)
        table = table[fresh]
        ids.add(found[fresh], now)
        self.top = ids.top
        return _arrays(table[~np.isnan(table[:, 2])])


def _table(rows: Sequence[Any]) -> np.ndarray:
    """Rows (id, user, item, weight, ts) as a float64 table."""
    return np.array(rows, dtype=np.float64).reshape(len(rows), 5)


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted ranges with overlapping or adjacent ones joined."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return out


def _arrays(table: np.ndarray) -> EventArrays:
    if not len(table):
        return _NO_EVENTS
    return EventArrays(
        table[:, 1].astype(np.int64),
        table[:, 2].astype(np.int64),
        table[:, 3],
        table[:, 4],
    )
