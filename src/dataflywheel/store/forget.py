"""Process-local copies of stored rows that deletions (erasure, retention) must reach.

The store caches external → dense ids, and whole-history reads on SQLite extend a copy of the
event log (:mod:`dataflywheel.learn.snapshot` keeps it in :data:`EVENT_LOG_COPIES`) on the
assumption that events are only ever added. After a delete, both are dropped (the process that
deletes at once; serving processes when they see the audit row). The slot lives here, not in
learn, so that the store's deletions reach it without the store importing a layer above it.
"""

from __future__ import annotations

import threading
import weakref

from dataflywheel.store.store import Kind, Store

EVENT_LOG_COPIES: weakref.WeakKeyDictionary[Store, object] = weakref.WeakKeyDictionary()
"""Per store, this process's copy of the event log (its type belongs to the reader)."""
EVENT_LOG_LOCK = threading.Lock()


def forget_event_log(store: Store) -> None:
    """Drop this process's copy of the event log; the next whole-history read is a full one."""
    with EVENT_LOG_LOCK:
        EVENT_LOG_COPIES.pop(store, None)


def forget_key(store: Store, kind: Kind, key: str) -> None:
    """Drop one external id from the id cache, so a returning subject gets a new row."""
    with store._ids_lock:
        store._ids[kind].pop(key, None)


def forget_dense_id(store: Store, kind: Kind, idx: int) -> None:
    """Drop every cached external id that maps to ``idx`` (a scan, once per erasure)."""
    with store._ids_lock:
        cache = store._ids[kind]
        for key in [key for key, value in cache.items() if value == idx]:
            del cache[key]
