"""Erasure (the right to be forgotten): delete everything stored about one user or one item.

One write transaction removes the rows that name the subject, by dense id or by external id,
and appends an ``audit_log`` row that says who erased what kind of subject, identified only by
the SHA-256 of its id, with the number of rows deleted per table. Serving processes read those
audit rows to drop what they hold in memory (:mod:`dataflywheel.serve.erased`).

What goes, for a user: their events, impressions (and the interleaving teams and shadow results
of those impressions), decisions whose context names them under a user key, label-queue rows and
regression cases, their insight rollup rows, and the user row. For an item: its events,
label-queue rows and regression cases, its per-item served rollups, the item row, and its id in
logged lists (impressions, shadow results), replaced by ``null`` so positions and propensities
of the other slots stay as served.

It sits in the loop layer, not in the store, because it deletes from every part's tables
(decisions, experiments, insight rollups, the label queue): only that layer may import them all.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Column, Connection, Table, Text, cast, delete, or_, select, update

from dataflywheel.decide.tables import decisions
from dataflywheel.errors import NotFoundError, ValidationError
from dataflywheel.experiments.tables import interleaving_teams
from dataflywheel.insight import tables as insight
from dataflywheel.label.tables import label_queue, regression_cases
from dataflywheel.store import audit, schema
from dataflywheel.store.forget import forget_event_log, forget_key
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Kind, Store

ACTIONS: dict[Kind, str] = {"users": audit.ERASE_USER, "items": audit.ERASE_ITEM}
_CHUNK = 500  # ids per IN (...) list: far below both dialects' parameter limits


@dataclass(frozen=True)
class Erasure:
    """What one erasure did: the subject's kind, its dense id (None when it had no row) and
    the rows deleted (or scrubbed) per table."""

    kind: Kind
    idx: int | None
    deleted: dict[str, int]
    audit_id: int


def subject_hash(key: str) -> str:
    """The SHA-256 (hex) that stands for an erased id in the audit log."""
    return hashlib.sha256(key.encode()).hexdigest()


def erase(store: Store, kind: Kind, key: str, *, actor: str, now: float | None = None) -> Erasure:
    """Delete every stored row about user or item ``key`` in one transaction and audit it.

    Raises :class:`NotFoundError` when nothing at all is stored about ``key``.
    """
    if kind not in ACTIONS:
        raise ValidationError("must be 'users' or 'items'", field="kind")
    table = schema.users if kind == "users" else schema.items
    column = table.c.user_id if kind == "users" else table.c.item_id
    with store.write() as conn:
        idx = conn.execute(select(table.c.idx).where(column == key)).scalar()
        erase_rows = _erase_user if kind == "users" else _erase_item
        deleted = erase_rows(conn, idx, key)
        deleted[kind] = conn.execute(delete(table).where(column == key)).rowcount
        deleted = {str(name): int(rows) for name, rows in deleted.items()}  # plain str keys
        if not any(deleted.values()):
            # Rolled back with the transaction: nothing was stored, so nothing is audited.
            raise NotFoundError(f"unknown {kind[:-1]} {key!r}", field=f"{kind[:-1]}_id")
        audit_id = audit.record(
            conn,
            actor=actor,
            action=ACTIONS[kind],
            subject=f"{kind[:-1]}:sha256:{subject_hash(key)}",
            # The dense id lets other processes drop their cached state; once the row is
            # gone it names nobody.
            detail={"idx": idx, "deleted": deleted},
            now=now,
        )
    forget_key(store, kind, key)
    forget_event_log(store)
    return Erasure(kind, idx, deleted, audit_id)


def _erase_user(conn: Connection, idx: int | None, key: str) -> dict[str, int]:
    e, i = schema.events.c, schema.impressions.c
    deleted: dict[str, int] = {}
    if idx is not None:
        deleted["events"] = conn.execute(delete(schema.events).where(e.user_idx == idx)).rowcount
    owns = i.user_id == key if idx is None else or_(i.user_id == key, i.user_idx == idx)
    served = [r for (r,) in conn.execute(select(i.recommendation_id).where(owns))]
    deleted["interleaving_teams"] = _delete_in(
        conn, interleaving_teams, "recommendation_id", served
    )
    deleted["shadow_results"] = _delete_in(conn, shadow_results, "recommendation_id", served)
    deleted["impressions"] = conn.execute(delete(schema.impressions).where(owns)).rowcount
    linked = [
        row_id
        for row_id, request in _rows_naming(conn, decisions, decisions.c.request, key)
        if isinstance(request, dict) and _names_user(request.get("context"), key)
    ]
    deleted["decision_events"] = _delete_in(conn, decisions, "id", linked)
    deleted["label_queue"] = conn.execute(
        delete(label_queue).where(label_queue.c.user_id == key)
    ).rowcount
    deleted["regression_cases"] = conn.execute(
        delete(regression_cases).where(regression_cases.c.user_id == key)
    ).rowcount
    if idx is not None:
        for table in (insight.user_days, insight.user_spans):
            deleted[table.name] = conn.execute(
                delete(table).where(table.c.user_idx == idx)
            ).rowcount
    return deleted


def _erase_item(conn: Connection, idx: int | None, key: str) -> dict[str, int]:
    e = schema.events.c
    deleted: dict[str, int] = {}
    if idx is not None:
        deleted["events"] = conn.execute(delete(schema.events).where(e.item_idx == idx)).rowcount
    deleted["label_queue"] = conn.execute(
        delete(label_queue).where(label_queue.c.item_id == key)
    ).rowcount
    deleted["regression_cases"] = conn.execute(
        delete(regression_cases).where(regression_cases.c.item_id == key)
    ).rowcount
    served_items = insight.served_items
    deleted[served_items.name] = conn.execute(
        delete(served_items).where(served_items.c.item_id == key)
    ).rowcount
    for table in (schema.impressions, shadow_results):
        deleted[table.name] = _scrub_lists(conn, table, key)
    return deleted


def _delete_in(conn: Connection, table: Table, column: str, values: Sequence[Any]) -> int:
    count = 0
    for start in range(0, len(values), _CHUNK):
        chunk = values[start : start + _CHUNK]
        count += conn.execute(delete(table).where(table.c[column].in_(chunk))).rowcount
    return count


def _like_patterns(key: str) -> list[str]:
    """LIKE patterns matching ``key`` as a JSON string under either encoder the store's JSON
    columns are written with (ASCII-escaped or not)."""
    encoded = {json.dumps(key), orjson.dumps(key).decode()}
    escaped = (p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for p in encoded)
    return [f"%{p}%" for p in escaped]


def _rows_naming(
    conn: Connection, table: Table, column: Column[Any], key: str
) -> list[tuple[Any, Any]]:
    """(id, parsed value) of rows whose JSON ``column`` may hold ``key`` as a string: a text
    match narrows the scan (SQLite's LIKE ignores ASCII case), callers check values exactly."""
    text = cast(column, Text)
    matches = or_(*(text.like(p, escape="\\") for p in _like_patterns(key)))
    return [
        (row_id, value) for row_id, value in conn.execute(select(table.c.id, column).where(matches))
    ]


def _names_user(value: Any, key: str, under_user: bool = False) -> bool:
    """Whether ``key`` is a string value under a key that names a user (``user``, ``userId``,
    ``user_id``, ``{"user": {"id": ...}}``...): ids in other places (actions, categories)
    may be anything and equal a user id by chance."""
    if isinstance(value, dict):
        return any(
            _names_user(v, key, under_user or "user" in str(k).lower()) for k, v in value.items()
        )
    if isinstance(value, list):
        return any(_names_user(v, key, under_user) for v in value)
    return under_user and value == key


def _scrub_lists(conn: Connection, table: Table, key: str) -> int:
    """Replace ``key`` by null in the ``item_ids`` lists of ``table``; returns rows changed."""
    changed = 0
    for row_id, items in _rows_naming(conn, table, table.c.item_ids, key):
        if not isinstance(items, list) or key not in items:
            continue
        scrubbed = [None if item == key else item for item in items]
        conn.execute(update(table).where(table.c.id == row_id).values(item_ids=scrubbed))
        changed += 1
    return changed
