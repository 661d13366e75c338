"""Training snapshots: the store's events as weighted arrays, with an id and a watermark.

A snapshot is every event up to ``watermark`` (the highest ``events.id`` included) that names an
item, each turned into a signed weight by the configured signals. Recording it lets every model
version say which data it learned from, which is how data-to-model latency is measured.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, bindparam, case, func, insert, literal, select

from dataflywheel.config import Settings
from dataflywheel.store import schema
from dataflywheel.store.bulk import read_columns
from dataflywheel.store.changes import ids_visible_in_order
from dataflywheel.store.forget import EVENT_LOG_COPIES, EVENT_LOG_LOCK
from dataflywheel.store.parallel_read import read_slices, slice_source
from dataflywheel.store.store import Store

# Reads spanning more ids than this go through the columnar bulk path.
BULK_READ_ROWS = 50_000
PARALLEL_READ_ROWS = 2_000_000
"""SQLite reads spanning more ids than this are split over one process per core (starting
the processes costs about a second; the read of two million rows, several)."""


@dataclass
class EventArrays:
    """Columns of weighted interactions (dense ids index the users/items tables)."""

    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray

    def __len__(self) -> int:
        return len(self.user_idx)

    def take(self, mask: np.ndarray) -> EventArrays:
        return EventArrays(
            self.user_idx[mask], self.item_idx[mask], self.weight[mask], self.timestamp[mask]
        )


@dataclass
class Snapshot:
    """A frozen view of the events a model is trained on."""

    id: str
    watermark: int
    created_at: float
    events: EventArrays
    n_users: int
    n_items: int
    n_events: int


def clipped_value(settings: Settings, event_type: str) -> Any:
    """SQL for the stored value within its type's ``value_bounds``.

    Ingest refuses values out of bounds, but rows stored before (or under wider bounds) must
    not overflow the weights: PostgreSQL raises on a float8 overflow, SQLite yields inf.
    """
    e = schema.events.c
    low, high = settings.value_bound(event_type)
    whens = [
        (condition, literal(bound))
        for condition, bound in ((e.value < low, low), (e.value > high, high))
        if math.isfinite(bound)
    ]
    return case(*whens, else_=e.value) if whens else e.value


def weight_expression(settings: Settings) -> Any:
    """SQL for each event's signed weight: ``weight * (value - offset)`` or ``weight``."""
    e = schema.events.c
    whens = []
    for name, signal in settings.signals.items():
        if signal.weight == 0:
            continue
        value = (
            (clipped_value(settings, name) - signal.offset) * signal.weight
            if signal.uses_value
            else literal(signal.weight)
        )
        whens.append((e.type == name, value))
    return case(*whens, else_=literal(0.0)) if whens else literal(0.0)


def events_query(settings: Settings) -> Any:
    """Weighted item events with ``after < id <= upto`` (bind parameters), in id order."""
    e = schema.events.c
    return (
        select(e.id, e.user_idx, e.item_idx, weight_expression(settings), e.ts)
        .where(
            e.item_idx.is_not(None),
            e.id > bindparam("after", type_=BigInteger),
            e.id <= bindparam("upto", type_=BigInteger),
        )
        .order_by(e.id)
    )


def read_events(
    store: Store, *, after: int = 0, upto: int | None = None
) -> tuple[EventArrays, int]:
    """Weighted item events with ``after < id <= upto``; returns them and the highest id seen.

    Where ids become visible in order (SQLite), whole-history reads up to a known id (snapshots,
    a champion's history) go through this process's :class:`_History`, which reads only the
    events it has not seen yet.
    """
    if after == 0 and upto is not None and ids_visible_in_order(store.engine):
        table = _history(store).upto(upto)
    else:
        table = _read_table(store, after, upto)
    return _arrays(table, after)


_NO_EVENTS = EventArrays(
    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
)


def _arrays(table: np.ndarray, after: int) -> tuple[EventArrays, int]:
    """Columns of a (id, user, item, weight, ts) table and its last id (``after`` if empty)."""
    if len(table) == 0:
        return _NO_EVENTS, after
    arrays = EventArrays(
        table[:, 1].astype(np.int64),
        table[:, 2].astype(np.int64),
        table[:, 3],
        table[:, 4],
    )
    return arrays, int(table[-1, 0])


def _read_table(store: Store, after: int, upto: int | None) -> np.ndarray:
    """Rows (id, user, item, weight, ts) with ``after < id <= upto`` as a float64 table."""
    query = events_query(store.settings)
    params = {"after": after, "upto": upto if upto is not None else 2**62}
    workers = os.cpu_count() or 1
    path = slice_source(store.engine)
    if path is not None and workers > 1 and upto is not None and upto - after >= PARALLEL_READ_ROWS:
        # Slices of the id range, each read by its own process, concatenated in id order.
        bounds = np.linspace(after, upto, workers + 1).round().astype(np.int64)
        with store.read() as conn:
            statements = [
                str(
                    query.params(after=int(lo), upto=int(hi)).compile(
                        conn, compile_kwargs={"literal_binds": True}
                    )
                )
                for lo, hi in itertools.pairwise(bounds)
            ]
        return read_slices(path, statements, 5)
    with store.read() as conn:
        if upto is None or upto - after < BULK_READ_ROWS:
            # Plain tuples: numpy probes each Row for array attributes, which costs 35x more.
            rows = list(map(tuple, conn.execute(query, params)))
            return np.array(rows, dtype=np.float64).reshape(len(rows), 5)
        sql = query.params(params).compile(conn, compile_kwargs={"literal_binds": True})
        return read_columns(conn, str(sql), 5)


HISTORY_MAX_EVENTS = 5_000_000
"""Above this many events the process keeps no copy (40 bytes per event) and reads in full."""


class _History:
    """The events this process has read so far, in id order, extended on demand.

    Events are append-only, so a read up to a later id only needs the rows after the last one
    read, provided ids become visible in order: true on SQLite, whose writers are serialised;
    PostgreSQL's concurrent writers can commit a lower id later, so it always reads in full.
    """

    def __init__(self, store: Store) -> None:
        self.store = store
        self.table = np.zeros((0, 5))
        self.read_upto = 0
        self.lock = threading.Lock()

    def upto(self, upto: int) -> np.ndarray:
        with self.lock:
            if upto > self.read_upto:
                fresh = _read_table(self.store, self.read_upto, upto)
                table = np.concatenate([self.table, fresh]) if len(self.table) else fresh
                if len(table) > HISTORY_MAX_EVENTS:
                    self.table, self.read_upto = np.zeros((0, 5)), 0
                    return table
                self.table, self.read_upto = table, upto
            end = int(np.searchsorted(self.table[:, 0], upto, side="right"))
            return self.table[:end]


def _history(store: Store) -> _History:
    with EVENT_LOG_LOCK:  # the store's slot, so that its deletions drop the copy
        found = EVENT_LOG_COPIES.get(store)
        if not isinstance(found, _History):
            found = EVENT_LOG_COPIES[store] = _History(store)
        return found


def entity_count(store: Store, table: Any) -> int:
    """One past the highest dense id: the row count of a matrix indexed by ``idx``."""
    with store.read() as conn:
        highest = conn.execute(select(func.max(table.c.idx))).scalar_one()
    return int(highest or 0) + 1


def take_snapshot(store: Store, *, now: float | None = None, record: bool = True) -> Snapshot:
    """Read every weighted event so far; ``record`` stores the snapshot (models refer to it)."""
    watermark = store.latest_event_id()
    events, _ = read_events(store, upto=watermark)
    snapshot = Snapshot(
        id=uuid.uuid4().hex[:16],
        watermark=watermark,
        created_at=time.time() if now is None else now,
        events=events,
        n_users=entity_count(store, schema.users),
        n_items=entity_count(store, schema.items),
        n_events=len(events),
    )
    if not record:
        return snapshot
    pairs = events.user_idx * snapshot.n_items + events.item_idx
    n_pairs = int(np.unique(pairs).size)
    with store.write() as conn:
        conn.execute(
            insert(schema.snapshots).values(
                id=snapshot.id,
                created_at=snapshot.created_at,
                watermark=watermark,
                n_events=snapshot.n_events,
                n_users=snapshot.n_users,
                n_items=snapshot.n_items,
                n_interactions=n_pairs,
                params={"signals": {k: v.model_dump() for k, v in store.settings.signals.items()}},
            )
        )
    return snapshot
