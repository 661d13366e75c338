"""The dashboard's admin views that need the composed Flywheel: one user or one item (history,
what was served, and a preview of the champion's ranking that is *not* logged as an
impression), and one experiment with its lift over time.

A dashboard lookup is not a user visit: logging it would put fake impressions into the
off-policy data, the CTR and the health verdict. So the preview scores with the champion's
model over the live histories (the user's newest events count at once, as in serving) but
does not call the serving path that logs, and it ranks greedily (live answers add
exploration, whose draws are random).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import func, select

from dataflywheel.errors import NotFoundError
from dataflywheel.experiments.report import experiment_status, experiment_timeline
from dataflywheel.store import schema
from dataflywheel.wheel import Flywheel

HISTORY_ROWS = 50
SERVED_ROWS = 5


def user_lookup(wheel: Flywheel, user_id: str, k: int = 10) -> dict[str, Any]:
    """A user's entity, newest events, newest served lists and the unlogged preview."""
    store = wheel.store
    entity = store.get_entity("users", user_id)
    user = store.lookup_ids("users", [user_id]).get(user_id)
    if entity is None and user is None:
        raise NotFoundError(f"unknown user {user_id!r}", field="user_id")
    e, it, im = schema.events.c, schema.items.c, schema.impressions.c
    champion = wheel.registry.champion()
    watermark = store.snapshot_watermark(champion["snapshot_id"]) if champion else None
    with store.read() as conn:
        history, by_type, after = [], {}, 0
        if user is not None:
            rows = conn.execute(
                select(e.ts, e.type, it.item_id, e.value, e.recommendation_id)
                .outerjoin(schema.items, it.idx == e.item_idx)
                .where(e.user_idx == user)
                .order_by(e.ts.desc(), e.id.desc())
                .limit(HISTORY_ROWS)
            ).all()
            history = [
                {"ts": ts, "type": t, "item_id": item, "value": v, "from_list": rec is not None}
                for ts, t, item, v, rec in rows
            ]
            counts = conn.execute(
                select(e.type, func.count()).where(e.user_idx == user).group_by(e.type)
            ).all()
            by_type = {str(t): int(n) for t, n in sorted(counts)}
            if watermark is not None:
                after = conn.execute(
                    select(func.count()).where(e.user_idx == user, e.id > watermark)
                ).scalar_one()
        lists = conn.execute(
            select(
                im.ts,
                im.recommendation_id,
                im.model_version,
                im.policy,
                im.experiment_id,
                im.arm,
                im.item_ids,
                im.scores,
                im.propensities,
            )
            .where(im.user_id == user_id)
            .order_by(im.ts.desc(), im.id.desc())
            .limit(SERVED_ROWS)
        ).all()
    return {
        "user_id": user_id,
        "entity": entity,
        "events_by_type": by_type,
        "history": history,
        "served": [_served(row) for row in lists],
        "preview": _preview(wheel, user, k, int(after), champion is not None),
    }


def _served(row: Any) -> dict[str, Any]:
    ts, rec, version, policy, experiment, arm, items, scores, props = row
    return {
        "ts": ts,
        "recommendation_id": rec,
        "model_version": version,
        "policy": policy,
        "experiment": None if experiment is None else {"id": experiment, "arm": arm},
        "items": [
            {"item_id": i, "score": s, "propensity": p}
            for i, s, p in zip(items or (), scores or (), props or (), strict=False)
        ],
    }


def _preview(
    wheel: Flywheel, user: int | None, k: int, after: int, has_champion: bool
) -> dict[str, Any]:
    """The champion's greedy top ``k`` for ``user`` right now, without logging anything."""
    service = wheel.serving
    served = service.served()
    served.histories.catch_up()
    service.catalog.refresh()
    allowed = service.catalog.allowed(None)
    size = allowed.size
    personal = False
    consumed = np.zeros(0, dtype=np.int64)
    scores = np.log1p(served.popularity(size))
    if user is not None and served.histories.known(user):
        n_items = served.model.n_items if served.model is not None else size
        row, consumed = served.histories.row(user, n_items, served.matrix_params)
        if served.model is not None and row.nnz:
            model_scores = served.model.score(row, np.arange(n_items))[0]
            scores = np.full(size, -np.inf)
            width = min(size, len(model_scores))
            scores[:width] = model_scores[:width]
            personal = True
    allowed[consumed[consumed < size]] = False
    candidates = np.flatnonzero(allowed & np.isfinite(scores))
    top = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
    return {
        "model_version": served.version if personal else None,
        "source": "champion model" if personal else "popularity (cold start)",
        "logged": False,
        "events_since_snapshot": after,
        "folded_in": personal and after > 0,
        "has_champion": has_champion,
        "items": [
            {"item_id": service.catalog.keys[int(i)], "score": float(scores[i])} for i in top
        ],
    }


def item_lookup(wheel: Flywheel, item_id: str) -> dict[str, Any]:
    """An item's entity, events by type, first event, first strong signal and similar items."""
    store = wheel.store
    entity = store.get_entity("items", item_id)
    if entity is None:
        raise NotFoundError(f"unknown item {item_id!r}", field="item_id")
    item = store.lookup_ids("items", [item_id]).get(item_id)
    strong = [n for n, s in wheel.settings.signals.items() if getattr(s, "strong", False)]
    e = schema.events.c
    with store.read() as conn:
        counts = conn.execute(
            select(e.type, func.count(), func.count(func.distinct(e.user_idx)), func.min(e.ts))
            .where(e.item_idx == item)
            .group_by(e.type)
        ).all()
        first_strong = conn.execute(
            select(func.min(e.ts)).where(e.item_idx == item, e.type.in_(strong))
        ).scalar_one()
    by_type = [
        {"type": t, "events": int(n), "users": int(u), "first": first}
        for t, n, u, first in sorted(counts, key=lambda r: -r[1])
    ]
    firsts = [row["first"] for row in by_type]
    return {
        "item_id": item_id,
        "entity": entity,
        "events_by_type": by_type,
        "first_event": min(firsts) if firsts else None,
        "first_strong_signal": first_strong,
        "strong_types": strong,
        "similar": wheel.similar(item_id, 10),
    }


def experiment_page(wheel: Flywheel, experiment_id: str, now: float) -> dict[str, Any]:
    """The status of ``GET /v1/experiments/{id}`` with ``timeline``: the primary metric's
    cumulative lift and its sequential interval at the end of each day since the start."""
    wheel.flush()
    rollout = wheel.loop.rollout
    experiment = rollout.experiments.get(experiment_id)
    status = experiment_status(wheel.store, experiment, rollout.config, now)
    timeline = experiment_timeline(wheel.store, experiment, rollout.config, now)
    return {**status, "timeline": timeline}
