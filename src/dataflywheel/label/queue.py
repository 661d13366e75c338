"""Triggers and the label queue: rules find hard cases among new events and queue them.

:meth:`LabelQueue.scan` reads the events stored since the last scan (a watermark in
``label_state``), enriches each with what served it and the entities' attributes, and queues
those a trigger matches, with the trigger's priority, once per (task, user, item) (dedup) and at
most ``quota_per_day`` per trigger over the last 24 hours.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import Row, func, insert, select, update

from dataflywheel.errors import ConflictError, ValidationError
from dataflywheel.label import rules
from dataflywheel.label.tables import label_queue, label_state, triggers
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Store, dialect_insert

BUILTIN_TASKS = ("relevance",)
SCAN_BATCH = 10_000
DAY = 86_400.0
T, Q = triggers.c, label_queue.c


def _trigger(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "task": row.task,
        "when": row.rule,
        "priority": row.priority,
        "quota_per_day": row.quota_per_day,
        "active": row.active,
        "created_at": row.created_at,
    }


def _case(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "task": row.task,
        "trigger_id": row.trigger_id,
        "user_id": row.user_id,
        "item_id": row.item_id,
        "recommendation_id": row.recommendation_id,
        "priority": row.priority,
        "reason": row.reason,
        "status": row.status,
        "created_at": row.created_at,
        "labelled_at": row.labelled_at,
        "label": row.label,
    }


class LabelQueue:
    """Trigger definitions, the scan that applies them, and the queue they fill."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # Triggers -------------------------------------------------------------------------------

    def add_trigger(self, spec: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """Validate and store a trigger; a duplicate name or rule is a ConflictError."""
        if not isinstance(spec, Mapping):
            raise ValidationError("a trigger is a JSON object", field="body")
        unknown = set(spec) - {"name", "task", "when", "priority", "quota_per_day"}
        if unknown:
            raise ValidationError(f"unknown trigger fields {sorted(unknown)}", field=min(unknown))
        name, task = spec.get("name"), spec.get("task", "relevance")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise ValidationError("name must be 1-128 characters", field="name")
        if not isinstance(task, str) or not 1 <= len(task) <= 64:
            raise ValidationError("task must be 1-64 characters", field="task")
        rules.validate(spec.get("when"))
        priority, quota = spec.get("priority", 0), spec.get("quota_per_day", 100)
        for field, value in (("priority", priority), ("quota_per_day", quota)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValidationError(f"{field} must be a non-negative integer", field=field)
        for existing in self.triggers():
            if existing["name"] == name:
                raise ConflictError(f"a trigger named {name!r} exists", field="name")
            if existing["task"] == task and existing["when"] == spec["when"]:
                raise ConflictError(
                    f"trigger {existing['name']!r} already has this rule for task {task!r}",
                    field="when",
                )
        trigger_id = uuid.uuid4().hex[:12]
        with self.store.write() as conn:
            conn.execute(
                insert(triggers).values(
                    id=trigger_id,
                    name=name,
                    task=task,
                    source="events",
                    rule=spec["when"],
                    priority=priority,
                    quota_per_day=quota,
                    active=True,
                    created_at=time.time() if now is None else now,
                )
            )
        return next(t for t in self.triggers() if t["id"] == trigger_id)

    def triggers(self) -> list[dict[str, Any]]:
        with self.store.read() as conn:
            return [_trigger(r) for r in conn.execute(select(triggers).order_by(T.created_at))]

    def tasks(self) -> set[str]:
        """Tasks that labels may name: the built-in ones and every trigger's."""
        return set(BUILTIN_TASKS) | {t["task"] for t in self.triggers()}

    # The queue ------------------------------------------------------------------------------

    def pending(self, limit: int = 100, task: str | None = None) -> list[dict[str, Any]]:
        """Unlabelled cases, highest priority first, oldest first within a priority."""
        query = select(label_queue).where(Q.status == "pending")
        if task is not None:
            query = query.where(Q.task == task)
        query = query.order_by(Q.priority.desc(), Q.created_at, Q.id).limit(limit)
        with self.store.read() as conn:
            return [_case(r) for r in conn.execute(query)]

    def cases(self, ids: list[int]) -> dict[int, dict[str, Any]]:
        with self.store.read() as conn:
            rows = conn.execute(select(label_queue).where(Q.id.in_(ids))).all()
        return {int(r.id): _case(r) for r in rows}

    def enqueue(self, trigger: Mapping[str, Any], cases: list[dict[str, Any]], now: float) -> int:
        """Queue ``cases`` for ``trigger`` within its daily quota; duplicates are skipped."""
        with self.store.write() as conn:
            used = conn.execute(
                select(func.count())
                .select_from(label_queue)
                .where(Q.trigger_id == trigger["id"], Q.created_at >= now - DAY)
            ).scalar_one()
            room = max(int(trigger["quota_per_day"]) - int(used), 0)
            added = 0
            for case in cases:
                if added >= room:
                    break
                key = f"{trigger['task']}|{case['user_id']}|{case.get('item_id') or ''}"
                statement = dialect_insert(conn, label_queue).values(
                    dedup_key=key,
                    task=trigger["task"],
                    trigger_id=trigger["id"],
                    user_id=case["user_id"],
                    item_id=case.get("item_id"),
                    recommendation_id=case.get("recommendation_id"),
                    priority=trigger["priority"],
                    reason=f"trigger {trigger['name']}",
                    status="pending",
                    created_at=now,
                )
                # RETURNING, not rowcount: PostgreSQL reports -1 rows for this statement here.
                inserted = statement.on_conflict_do_nothing().returning(Q.id)
                added += conn.execute(inserted).first() is not None
        return added

    def scan(self, now: float | None = None) -> dict[str, int]:
        """Apply every active trigger to the events stored since the last scan."""
        now = time.time() if now is None else now
        active = [t for t in self.triggers() if t["active"]]
        with self.store.read() as conn:
            watermark = int(
                conn.execute(
                    select(label_state.c.watermark).where(label_state.c.source == "events")
                ).scalar_one()
            )
        if active:
            records, last = self._records(watermark)
        else:  # nothing to match: skip the reading, move the watermark on
            records, last = [], self.store.latest_event_id()
        queued: dict[str, int] = {}
        for trigger in active:
            hits = [r for r in records if rules.matches(trigger["when"], r)]
            if hits:
                queued[trigger["name"]] = self.enqueue(trigger, hits, now)
        if last > watermark:
            with self.store.write() as conn:
                conn.execute(
                    update(label_state)
                    .where(label_state.c.source == "events")
                    .values(watermark=last)
                )
        return queued

    def _records(self, watermark: int) -> tuple[list[dict[str, Any]], int]:
        """The next batch of events as trigger records, and the highest event id read."""
        e, u, it = schema.events.c, schema.users.c, schema.items.c
        with self.store.read() as conn:
            rows = conn.execute(
                select(
                    e.id,
                    e.type,
                    e.value,
                    e.item_idx,
                    e.recommendation_id,
                    e.context,
                    u.user_id,
                    u.attributes,
                    it.item_id,
                    it.attributes.label("item_attributes"),
                    it.categories,
                )
                .select_from(
                    schema.events.join(schema.users, e.user_idx == u.idx).outerjoin(
                        schema.items, e.item_idx == it.idx
                    )
                )
                .where(e.id > watermark, e.type != "label")
                .order_by(e.id)
                .limit(SCAN_BATCH)
            ).all()
        if not rows:
            return [], watermark
        served = self._served({r.recommendation_id for r in rows if r.recommendation_id})
        rates = self._rates({r.item_idx for r in rows if r.item_idx is not None})
        records = []
        for r in rows:
            record: dict[str, Any] = {
                "type": r.type,
                "value": r.value,
                "user_id": r.user_id,
                "item_id": r.item_id,
                "recommendation_id": r.recommendation_id,
                "context": _context(r.context),
                "user": r.attributes or {},
                "item": {**(r.item_attributes or {}), "categories": r.categories or []},
                "rate": rates.get(r.item_idx, {}),
            }
            record.update(served.get((r.recommendation_id, r.item_id), {}))
            records.append(record)
        return records, int(rows[-1].id)

    def _served(self, recommendation_ids: set[str]) -> dict[tuple[str, str], dict[str, Any]]:
        """Score, rank and propensity of each item in the given lists, and shadow overlap."""
        i, s = schema.impressions.c, shadow_results.c
        ids = sorted(recommendation_ids)
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for start in range(0, len(ids), 900):
            chunk = ids[start : start + 900]
            with self.store.read() as conn:
                lists = conn.execute(
                    select(i.recommendation_id, i.item_ids, i.scores, i.propensities).where(
                        i.recommendation_id.in_(chunk)
                    )
                ).all()
                overlaps: dict[str, float] = {
                    rec: low
                    for rec, low in conn.execute(
                        select(s.recommendation_id, func.min(s.overlap))
                        .where(s.recommendation_id.in_(chunk))
                        .group_by(s.recommendation_id)
                    ).all()
                }
            for rec, items, scores, propensities in lists:
                for rank, (item, score, p) in enumerate(
                    zip(items, scores, propensities, strict=True)
                ):
                    out[(rec, item)] = {
                        "score": score,
                        "rank": rank,
                        "propensity": p,
                        "shadow_overlap": overlaps.get(rec),
                    }
        return out

    def _rates(self, item_idx: set[int]) -> dict[int, dict[str, float]]:
        """For each item, the share of its events of each type (all time)."""
        e = schema.events.c
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        ids = sorted(item_idx)
        for start in range(0, len(ids), 900):
            with self.store.read() as conn:
                for item, kind, n in conn.execute(
                    select(e.item_idx, e.type, func.count())
                    .where(e.item_idx.in_(ids[start : start + 900]))
                    .group_by(e.item_idx, e.type)
                ).all():
                    counts[int(item)][str(kind)] = int(n)
        return {
            item: {kind: n / sum(c.values()) for kind, n in c.items()} for item, c in counts.items()
        }


def _context(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
