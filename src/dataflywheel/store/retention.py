"""Retention: events and impressions older than ``retention_days`` are deleted.

The background loop calls :func:`apply_retention` on each tick. Rows go in short transactions
of at most ``CHUNK`` rows each (found through the ``ts`` indexes), so a first run over a long
history never holds the write lock for long; an audit row records the counts.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import Table, delete, select

from dataflywheel.config import DAY
from dataflywheel.errors import ValidationError
from dataflywheel.store import audit, schema
from dataflywheel.store.forget import forget_event_log
from dataflywheel.store.store import Store

CHUNK = 50_000


def apply_retention(store: Store, days: float | None, now: float | None = None) -> dict[str, int]:
    """Delete events and impressions whose time is more than ``days`` before ``now``
    (``None``: keep everything); returns the rows deleted per table."""
    if days is None:
        return {}
    if isinstance(days, bool) or not isinstance(days, int | float) or not days > 0:
        raise ValidationError("must be a positive number of days", field="retention_days")
    now = time.time() if now is None else now
    cutoff = now - days * DAY
    deleted = {
        str(table.name): _delete_before(store, table, cutoff)
        for table in (schema.events, schema.impressions)
    }
    if any(deleted.values()):
        forget_event_log(store)
        with store.write() as conn:
            audit.record(
                conn,
                actor="retention",
                action=audit.RETENTION,
                subject=f"older than {days:g} days",
                detail={"cutoff": cutoff, "deleted": deleted},
                now=now,
            )
    return deleted


def _delete_before(store: Store, table: Table, cutoff: float) -> int:
    c: Any = table.c
    total = 0
    while True:
        with store.write() as conn:
            oldest = select(c.id).where(c.ts < cutoff).limit(CHUNK).scalar_subquery()
            count = conn.execute(delete(table).where(c.id.in_(oldest))).rowcount
        total += count
        if count < CHUNK:
            return total
