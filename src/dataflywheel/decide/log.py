"""The write-behind decision log: new rows, their later states, inbox rows, in one batch.

Ranks and rewards are answered from memory and queued here; a background thread writes the
queue every 50 ms in one transaction (JSON with orjson, a row's later update folded into its
insert when both fall in one batch). The owner of learning passes a *fence*: a statement run
first in the same transaction that renews its lease and says whether it still holds it, so a
process that lost the lease can never stamp ``learned_seq`` after its successor started.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from dataflywheel.decide.pending import Decision
from dataflywheel.decide.tables import decisions, inbox
from dataflywheel.store.store import Store, dialect_insert

log = logging.getLogger(__name__)

MUTABLE = (
    "activated_at",
    "reward",
    "reward_at",
    "rewards",
    "outcome",
    "learned_at",
    "learned_seq",
    "deadline",
)
Key = tuple[str, str, str]
Fence = Callable[[Connection], bool]
c = decisions.c


class DecisionLog:
    """Queued log writes of one process, flushed in one transaction at a time."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._inserts: dict[Key, dict[str, Any]] = {}
        self._updates: dict[Key, dict[str, Any]] = {}
        self._forwards: list[dict[str, Any]] = []
        self._applied: list[int] = []
        self._writing: set[tuple[str, str]] = set()
        self._deleting: set[int] = set()

    def insert(self, rows: Sequence[dict[str, Any]]) -> None:
        with self._lock:
            for row in rows:
                self._inserts[(row["deployment"], row["event_id"], row["slot_id"])] = row

    def update(self, name: str, event_id: str, deadline: float, made: Sequence[Decision]) -> None:
        """Queue the decisions' new state; a row still waiting to be inserted takes it directly,
        so a rank rewarded within one batch is written once."""
        with self._lock:
            for d in made:
                values = {n: getattr(d, n) for n in MUTABLE if n != "deadline"}
                values["deadline"] = deadline
                key = (name, event_id, d.slot_id)
                row = self._inserts.get(key)
                if row is None:
                    self._updates[key] = values
                else:
                    row.update(values)

    def forward(self, rows: Sequence[dict[str, Any]]) -> None:
        """Queue inbox rows (rewards and activations for the owner), written after the batch's
        inserts so the owner never sees a reward before its event."""
        with self._lock:
            self._forwards.extend(rows)

    def applied(self, inbox_id: int) -> None:
        """An inbox row the owner applied: deleted with the batch holding its effect."""
        with self._lock:
            self._applied.append(inbox_id)

    def applying(self) -> set[int]:
        """Inbox rows applied but not deleted yet (not to be applied again)."""
        with self._lock:
            return {*self._applied, *self._deleting}

    def busy(self, name: str, event_id: str) -> bool:
        """Whether a write of this event is queued or being written (the store is behind)."""
        with self._lock:
            if (name, event_id) in self._writing:
                return True
            return any(k[0] == name and k[1] == event_id for k in (*self._inserts, *self._updates))

    def flush(self, fence: Fence | None = None, on_lost: Callable[[], None] | None = None) -> None:
        """Write everything queued. With ``fence``, learned columns are written only while it
        holds; when it does not, they are left empty (the next owner learns those decisions)
        and ``on_lost`` is called after the write."""
        with self._flushing:
            with self._lock:
                inserts, self._inserts = self._inserts, {}
                updates, self._updates = self._updates, {}
                forwards, self._forwards = self._forwards, []
                applied, self._applied = self._applied, []
                self._writing = {(k[0], k[1]) for k in (*inserts, *updates)}
                self._deleting = set(applied)
            if not (inserts or updates or forwards or applied):
                return
            held = True
            try:
                with self.store.write() as conn:
                    held = fence(conn) if fence is not None else False
                    self._write(conn, inserts, updates, forwards, applied, held)
            except Exception:
                log.exception("decision log write failed; retrying")
                with self._lock:
                    self._inserts = {**inserts, **self._inserts}
                    self._updates = {**updates, **self._updates}
                    self._forwards = forwards + self._forwards
                    self._applied = applied + self._applied
                raise
            finally:
                with self._lock:
                    self._writing = set()
                    self._deleting = set()
        if fence is not None and not held and on_lost is not None:
            on_lost()

    @staticmethod
    def _write(
        conn: Connection,
        inserts: dict[Key, dict[str, Any]],
        updates: dict[Key, dict[str, Any]],
        forwards: list[dict[str, Any]],
        applied: list[int],
        held: bool,
    ) -> None:
        if not held:
            for row in (*inserts.values(), *updates.values()):
                row["learned_seq"] = row["learned_at"] = None
        if inserts:
            statement = dialect_insert(conn, decisions).on_conflict_do_nothing(
                index_elements=["deployment", "event_id", "slot_id"]
            )
            conn.execute(statement, list(inserts.values()))
        if forwards:
            conn.execute(insert(inbox), forwards)
        if updates:
            values: dict[str, Any] = {name: bindparam(name) for name in MUTABLE}
            # Only the owner stamps learned_seq, and never over a stamp: a decision's stamp is
            # written once whichever process learned it.
            values["learned_seq"] = func.coalesce(c.learned_seq, bindparam("learned_seq"))
            values["learned_at"] = func.coalesce(c.learned_at, bindparam("learned_at"))
            conn.execute(
                update(decisions)
                .where(
                    c.deployment == bindparam("k_deployment"),
                    c.event_id == bindparam("k_event"),
                    c.slot_id == bindparam("k_slot"),
                )
                .values(values),
                [
                    {"k_deployment": d, "k_event": e, "k_slot": s, **row}
                    for (d, e, s), row in updates.items()
                ],
            )
        if applied:
            conn.execute(delete(inbox).where(inbox.c.id.in_(applied)))


def event_rows(store: Store, name: str, event_id: str) -> list[Any]:
    """The log rows of one event (one per slot)."""
    with store.read() as conn:
        return list(
            conn.execute(
                select(decisions).where(c.deployment == name, c.event_id == event_id).order_by(c.id)
            ).all()
        )


def count_late(store: Store, name: str, event_id: str, slots: Sequence[str] | None) -> list[Any]:
    """Count a late reward on the event's rows (``slots`` None: just look); the rows found."""
    where = and_(c.deployment == name, c.event_id == event_id)
    if slots is not None:
        where = and_(where, c.slot_id.in_(slots))
    with store.write() as conn:
        found = list(conn.execute(select(c.slot_id, c.outcome).where(where)).all())
        if found and slots is not None:
            conn.execute(update(decisions).where(where).values(late_rewards=c.late_rewards + 1))
    return found


def send_to_inbox(store: Store, rows: Sequence[dict[str, Any]]) -> None:
    """Write inbox rows now (a reward for an event another process ranked)."""
    with store.write() as conn:
        conn.execute(insert(inbox), list(rows))


def read_inbox(store: Store, limit: int = 1000) -> list[Any]:
    with store.read() as conn:
        return list(conn.execute(select(inbox).order_by(inbox.c.id).limit(limit)).all())
