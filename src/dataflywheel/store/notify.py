"""Change notifications between processes on one PostgreSQL store (LISTEN/NOTIFY).

Writers send ``NOTIFY`` inside the transaction that makes the change: PostgreSQL delivers it
only if that transaction commits, after the commit, and in commit order. Every process that
serves keeps one dedicated connection listening (a daemon thread per store URL, shared by every
:class:`~dataflywheel.store.store.Store` object of the process on that URL) and hands each
notification to its subscribers:

- channel ``flywheel_events``: payload ``"LO-HI"``, the id range of one insert into ``events``
  (ids of concurrent inserts may interleave, so the range can hold other writers' ids);
- channel ``flywheel_changes``: payload a topic (``keys``, ``models``...) whose rows changed.

Subscribers also hear topic ``*`` each time the listener (re)connects: whatever was committed
while nobody listened may have changed. On SQLite every function here is a no-op: its writers
are serialised and serving probes ``PRAGMA data_version`` instead.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine

log = logging.getLogger(__name__)
EVENTS = "flywheel_events"
CHANGES = "flywheel_changes"
ANY = "*"
_RANGES = "flywheel.event_ranges"
_RECONNECT_SECONDS = 0.5
_RECONNECT_MAX_SECONDS = 30.0
_WAKE_SECONDS = 1.0


class Subscriber(Protocol):
    def on_events(self, lo: int, hi: int) -> None: ...

    def on_change(self, topic: str) -> None: ...


def notify(conn: Connection, topic: str) -> None:
    """Tell every listening process, when ``conn``'s transaction commits, that ``topic``
    changed."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_notify(%s, %s)", (CHANGES, topic))


def announce_events_sql(lo: str, hi: str) -> str:
    """The SQL call announcing the event ids ``lo..hi`` (SQL expressions) at commit, for the
    statement that inserts them: a statement of its own would cost a round trip per insert,
    which single-event requests feel. Pair it with :func:`note_event_range`."""
    return f"pg_notify('{EVENTS}', {lo} || '-' || {hi})"


def note_event_range(conn: Connection, lo: int, hi: int) -> None:
    """Note the event ids ``lo..hi`` announced in ``conn``'s transaction, for
    :func:`take_event_ranges`."""
    conn.info.setdefault(_RANGES, []).append((lo, hi))


def take_event_ranges(conn: Connection) -> list[tuple[int, int]]:
    """The id ranges announced in ``conn``'s transaction so far (forgotten by this call)."""
    found: list[tuple[int, int]] = conn.info.pop(_RANGES, [])
    return found


class Hub:
    """The listener of one store URL and its (weakly held) subscribers."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.listening = threading.Event()
        """Set while the LISTEN connection is up: only then may subscribers rely on it."""
        self._subscribers: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.add(subscriber)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="flywheel-listen", daemon=True
                )
                self._thread.start()

    def unsubscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.discard(subscriber)

    def dispatch(self, channel: str, payload: str) -> None:
        if channel == EVENTS:
            lo, _, hi = payload.partition("-")
            try:
                bounds = int(lo), int(hi)
            except ValueError:
                log.warning("ignoring malformed event notification %r", payload)
                return
            self.published([bounds])
        else:
            for subscriber in self._current():
                subscriber.on_change(payload)

    def published(self, ranges: Sequence[tuple[int, int]]) -> None:
        """Hand event ids ``lo..hi`` to the subscribers: heard from the server, or committed
        by this process (at once, not when the notification comes back: a request answered
        here right after the acknowledgement sees them)."""
        subscribers = self._current() if ranges else ()
        for lo, hi in ranges:
            for subscriber in subscribers:
                subscriber.on_events(lo, hi)

    def _current(self) -> list[Any]:
        with self._lock:
            return list(self._subscribers)

    def _idle(self) -> bool:
        """Whether this thread is to stop: nobody listens any more (a later subscriber starts
        a new thread), or it was replaced."""
        with self._lock:
            if self._thread is not threading.current_thread():
                return True
            if not self._subscribers:
                self._thread = None
                return True
            return False

    def _run(self) -> None:
        import psycopg

        pause = _RECONNECT_SECONDS
        while not self._idle():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {EVENTS}")
                    conn.execute(f"LISTEN {CHANGES}")
                    self.listening.set()
                    pause = _RECONNECT_SECONDS
                    self.dispatch(CHANGES, ANY)
                    while not self._idle():
                        for note in conn.notifies(timeout=_WAKE_SECONDS):
                            self.dispatch(note.channel, note.payload)
            except psycopg.Error as exc:
                log.warning("change notifications interrupted: %s", exc)
            finally:
                with self._lock:  # a successor thread may already listen
                    if self._thread in (None, threading.current_thread()):
                        self.listening.clear()
            threading.Event().wait(pause)
            pause = min(2 * pause, _RECONNECT_MAX_SECONDS)


_HUBS: dict[str, Hub] = {}
_HUBS_LOCK = threading.Lock()


def url_key(url: Any) -> str:
    """A PostgreSQL store's SQLAlchemy URL as a libpq URL: the key of its hub."""
    return str(url.set(drivername="postgresql").render_as_string(hide_password=False))


def hub(url: Any) -> Hub:
    """The hub of a PostgreSQL store (its SQLAlchemy URL), created on first use."""
    found_key = url_key(url)
    with _HUBS_LOCK:
        found = _HUBS.get(found_key)
        if found is None:
            found = _HUBS[found_key] = Hub(found_key)
        return found


def listener(engine: Engine) -> Hub | None:
    """The hub that hears the commits announced on ``engine``'s store, or None where commits
    are not announced (SQLite)."""
    return hub(engine.url) if engine.dialect.name == "postgresql" else None
