"""Ingestion: validate events, map ids, store the valid ones durably.

The server funnels every batch through :class:`GroupCommitWriter`: one thread commits whatever
batches are waiting in a single transaction, so many concurrent requests share one fsync while
each still gets its reply only after its own events are durable.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.exc import DBAPIError

from dataflywheel.errors import ValidationError
from dataflywheel.ingest.contract import settle
from dataflywheel.ingest.validate import Event, EventValidator, utc_day
from dataflywheel.store import notify
from dataflywheel.store.bulk import EventRow, insert_event_batches
from dataflywheel.store.dialect import commit_threads, retryable
from dataflywheel.store.store import Store

# Upper bound of events committed in one group transaction.
GROUP_MAX_EVENTS = 50_000
# Commits of a group that a concurrent transaction got in the way of (a deadlock between
# PostgreSQL transactions that insert the same new keys): the group is committed again.
DEADLOCK_RETRIES = 3


@dataclass
class IngestResult:
    """What happened to a batch: the contract's response body."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def settle(self, kept: int, inserted: int) -> None:
        """Count ``kept`` valid events of which ``inserted`` were new."""
        self.accepted, self.duplicates = settle(kept, inserted)

    def to_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


@dataclass
class Batch:
    """Validated events of one request, and how many of its events were rejected."""

    events: Sequence[Event]
    rejected: int
    received_at: float


class Ingestor:
    """Turns raw event objects into stored events; shared by HTTP, CLI import and Python API."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.validator = EventValidator(store.settings)
        self._hub = notify.listener(store.engine)

    def validate(self, raw_events: Sequence[Any], now: float) -> tuple[list[Event], IngestResult]:
        """Split raw events into valid ones and the per-event rejections."""
        result = IngestResult()
        valid: list[Event] = []
        for index, raw in enumerate(raw_events):
            try:
                valid.append(self.validator.validate(raw, now))
            except ValidationError as exc:
                result.rejected.append({"index": index, "field": exc.field, "error": exc.message})
        return valid, result

    def ingest(self, raw_events: Sequence[Any]) -> IngestResult:
        """Validate and store ``raw_events``; returns once the valid ones are committed."""
        now = time.time()
        valid, result = self.validate(raw_events, now)
        result.settle(len(valid), self.commit([Batch(valid, len(result.rejected), now)])[0])
        return result

    def commit(self, batches: Sequence[Batch]) -> list[int]:
        """Store several batches in one transaction; returns how many events of each were new."""
        store = self.store
        now = batches[0].received_at
        per_day: dict[str, list[int]] = {}
        with store.write() as conn:
            # Ids of the whole group at once: two statements per group, not per batch.
            users, new_users = store.resolve_ids(
                conn, "users", {e.user_id for batch in batches for e in batch.events}, now
            )
            item_keys = {
                e.item_id for batch in batches for e in batch.events if e.item_id is not None
            }
            items, new_items = store.resolve_ids(conn, "items", item_keys, now)
            inserted = insert_event_batches(conn, [_rows(batch, users, items) for batch in batches])
            for batch, new in zip(batches, inserted, strict=True):
                counts = per_day.setdefault(utc_day(batch.received_at), [0, 0, 0])
                accepted, duplicates = settle(len(batch.events), new)
                counts[0] += accepted
                counts[1] += duplicates
                counts[2] += batch.rejected
            # One counter update per day, not per request: a group can hold many requests.
            for day, (accepted, duplicates, rejected) in per_day.items():
                store.record_ingest(conn, day, accepted, duplicates, rejected)
            ranges = notify.take_event_ranges(conn)
        # Other processes hear of the new events by the server's notification at commit.
        if self._hub is not None:
            self._hub.published(ranges)
        store.remember_ids("users", new_users)
        store.remember_ids("items", new_items)
        return inserted


def _rows(batch: Batch, users: dict[str, int], items: dict[str, int]) -> list[EventRow]:
    received_at, item_idx = batch.received_at, items.get
    return [
        (
            e.event_id,
            users[e.user_id],
            item_idx(e.item_id) if e.item_id is not None else None,
            e.type,
            e.value,
            e.timestamp,
            received_at,
            e.recommendation_id,
            e.context,
        )
        for e in batch.events
    ]


class GroupCommitWriter:
    """Threads that commit queued batches together; ``submit`` resolves when durable."""

    def __init__(self, ingestor: Ingestor) -> None:
        self.ingestor = ingestor
        self._queue: queue.Queue[tuple[Batch, Future[int]] | None] = queue.Queue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"group-commit-{n}", daemon=True)
            for n in range(commit_threads(ingestor.store.engine))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, batch: Batch) -> Future[int]:
        """Queue ``batch``; after :meth:`close` it is committed at once in the caller."""
        future: Future[int] = Future()
        if self._closed:
            try:
                future.set_result(self.ingestor.commit([batch])[0])
            except Exception as exc:  # the caller's await re-raises it
                future.set_exception(exc)
            return future
        self._queue.put((batch, future))
        return future

    def close(self) -> None:
        """Commit what is queued, then stop the threads."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            for thread in self._threads:
                thread.join()
            # A batch queued while closing still gets its answer.
            while not self._queue.empty():
                item = self._queue.get_nowait()
                if item is not None:
                    self._commit([item])

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._queue.put(None)  # the stop signal, for the other threads
                return
            group = [first]
            size = len(first[0].events)
            while size < GROUP_MAX_EVENTS:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)
                    break
                group.append(item)
                size += len(item[0].events)
            self._commit(group)

    def _commit(self, group: list[tuple[Batch, Future[int]]]) -> None:
        batches = [batch for batch, _ in group]
        for attempt in range(1, DEADLOCK_RETRIES + 1):
            try:
                counts = self.ingestor.commit(batches)
            except DBAPIError as exc:
                if retryable(exc) and attempt < DEADLOCK_RETRIES:
                    continue
                self._fail(group, exc)
                return
            except Exception as exc:  # every waiter must hear about the failure
                self._fail(group, exc)
                return
            for (_, future), count in zip(group, counts, strict=True):
                future.set_result(count)
            return

    @staticmethod
    def _fail(group: list[tuple[Batch, Future[int]]], exc: Exception) -> None:
        for _, future in group:
            future.set_exception(exc)
