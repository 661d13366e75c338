"""Process-local copies of stored rows that deletions (erasure, retention) must reach.

The store caches external → dense ids, and whole-history reads on SQLite extend a copy of the
event log kept by :mod:`dataflywheel.learn.snapshot` on the assumption that events are only
ever added. After a delete, both are dropped (the process that deletes at once; serving
processes when they see the audit row).
"""

from __future__ import annotations

from dataflywheel.learn import snapshot
from dataflywheel.store.store import Kind, Store


def forget_event_log(store: Store) -> None:
    """Drop this process's copy of the event log; the next whole-history read is a full one."""
    with snapshot._HISTORIES_LOCK:
        snapshot._HISTORIES.pop(store, None)


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
