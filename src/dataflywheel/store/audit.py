"""The audit log: who did what to whom, never the data itself.

Erasure and retention append rows here in the transaction that deletes; serving processes read
the rows after the last one they saw to drop what they still hold in memory.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Connection, insert, select

from dataflywheel.store import schema
from dataflywheel.store.store import Store

ERASE_USER = "erase_user"
ERASE_ITEM = "erase_item"
RETENTION = "retention"
DELETIONS = (ERASE_USER, ERASE_ITEM, RETENTION)
"""Actions that delete stored rows (processes that cache rows must react to them)."""


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    subject: str,
    detail: dict[str, Any],
    now: float | None = None,
) -> int:
    """Append one audit row inside ``conn``'s transaction; returns its id."""
    result = conn.execute(
        insert(schema.audit_log).values(
            ts=time.time() if now is None else now,
            actor=actor[:64],
            action=action,
            subject=subject[:128],
            detail=detail,
        )
    )
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def latest_id(store: Store) -> int:
    """The highest audit row id (0 when the log is empty)."""
    a = schema.audit_log.c
    with store.read() as conn:
        found = conn.execute(select(a.id).order_by(a.id.desc()).limit(1)).scalar()
    return int(found or 0)


def deletions_since(store: Store, after: int) -> tuple[list[tuple[str, dict[str, Any]]], int]:
    """The deleting actions audited after row ``after``: (action, detail) pairs in order, and
    the highest id seen (``after`` when there is none). One primary-key range read."""
    a = schema.audit_log.c
    with store.read() as conn:
        rows = conn.execute(
            select(a.id, a.action, a.detail)
            .where(a.id > after, a.action.in_(DELETIONS))
            .order_by(a.id)
        ).all()
    last = max((int(r.id) for r in rows), default=after)
    return [(str(r.action), dict(r.detail or {})) for r in rows], last
