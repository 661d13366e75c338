"""Data of the dashboard's pictures beyond the KPIs: click-through of model slots against
exploration slots per day, model quality by version with promotions and rollbacks, the
models page (registry, lifecycle transitions, audit log) and the experiments page."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import orjson
from sqlalchemy import Connection, select

from dataflywheel.config import Settings
from dataflywheel.experiments.tables import experiments
from dataflywheel.insight.days import DAY, iso
from dataflywheel.insight.evidence_views import fmt
from dataflywheel.insight.quality import clicked_slots, primary_metric, ratio, transitions
from dataflywheel.learn.registry import Registry
from dataflywheel.store import schema
from dataflywheel.store.store import Store

# The newest lists read for the slot chart: a bounded read whatever the store's size.
SLOT_SAMPLE = 20_000
AUDIT_ROWS = 200


def slots_by_day(conn: Connection, settings: Settings, low: int, high: int) -> list[dict[str, Any]]:
    """Per day, click-through of the slots the model chose (propensity ≥ 0.5) and of the slots
    exploration filled (propensity < 0.5), over the newest ``SLOT_SAMPLE`` model-served lists
    in [low, high] (the same split as health condition 3)."""
    i = schema.impressions.c
    lists = conn.execute(
        select(i.recommendation_id, i.ts, i.item_ids, i.propensities)
        .where(i.model_version.is_not(None), i.ts >= low * DAY, i.ts < (high + 1) * DAY)
        .order_by(i.id.desc())
        .limit(SLOT_SAMPLE)
    ).all()
    clicked = clicked_slots(conn, settings, [row[0] for row in lists])
    # day -> [model slots, model clicks, exploration slots, exploration clicks]
    days: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for rec, ts, raw_items, raw_props in lists:
        counts = days[int(ts // DAY)]
        for item, p in zip(_json(raw_items), _json(raw_props), strict=False):
            side = 0 if float(p) >= 0.5 else 2
            counts[side] += 1
            counts[side + 1] += (rec, str(item)) in clicked
    return [
        {
            "date": iso(day),
            "model_slots": c[0],
            "model_ctr": ratio(c[1], c[0]),
            "exploration_slots": c[2],
            "exploration_ctr": ratio(c[3], c[2]),
        }
        for day, c in sorted(days.items())
    ]


def _json(raw: Any) -> list[Any]:
    value = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
    return list(value or ())


def model_history(versions: list[dict[str, Any]], moves: list[dict[str, Any]]) -> dict[str, Any]:
    """Offline quality by version in creation order, with the champion, every version that was
    promoted and every version rolled back (from the lifecycle transitions)."""
    metric = primary_metric(versions)
    promoted = sorted({t["version"] for t in moves if t["to"] == "champion"})
    rolled = sorted({t["version"] for t in moves if str(t["reason"]).startswith("rolled back")})
    return {
        "metric": metric,
        "points": [
            {
                "version": m["version"],
                "status": m["status"],
                "value": (m["metrics"] or {}).get(metric) if metric else None,
                "created_at": m["created_at"],
                "promoted": m["version"] in promoted,
                "rolled_back": m["version"] in rolled,
            }
            for m in versions
        ],
    }


def models_page(store: Store) -> dict[str, Any]:
    """The registry with metrics and status, lifecycle transitions and the audit log; an
    automatic rollback's reason and evidence come from the retired version's ``watch``."""
    versions = Registry(store).versions()
    a = schema.audit_log.c
    with store.read() as conn:
        moves = transitions(conn, limit=1_000)
        audit = conn.execute(
            select(a.ts, a.actor, a.action, a.subject, a.detail)
            .order_by(a.ts.desc(), a.id.desc())
            .limit(AUDIT_ROWS)
        ).all()
    models = []
    for m in reversed(versions):
        metrics = {k: v for k, v in (m["metrics"] or {}).items() if isinstance(v, int | float)}
        watch = (m["metrics"] or {}).get("watch")
        models.append(
            {
                "version": m["version"],
                "name": m["name"],
                "status": m["status"],
                "created_at": m["created_at"],
                "promoted_at": m["promoted_at"],
                "fit_seconds": m["fit_seconds"],
                "metrics": metrics,
                "rollback": _rollback(watch) if isinstance(watch, dict) else None,
            }
        )
    return {
        "history": model_history(versions, moves),
        "models": models,
        "transitions": list(reversed(moves)),
        "audit": [
            {"ts": ts, "actor": actor, "action": action, "subject": subject, "detail": fmt(detail)}
            for ts, actor, action, subject, detail in audit
        ],
    }


def _rollback(watch: dict[str, Any]) -> dict[str, Any]:
    return {"reason": str(watch.get("reason", "")), "restored": watch.get("restored")}


def experiments_page(store: Store, limit: int = 100) -> dict[str, Any]:
    """The newest experiments, newest first (their status comes from GET /v1/experiments/{id})."""
    x = experiments.c
    with store.read() as conn:
        rows = conn.execute(
            select(x.id, x.name, x.kind, x.status, x.metric, x.created_at, x.stopped_at)
            .order_by(x.created_at.desc())
            .limit(limit)
        ).all()
    return {"rows": [dict(row._mapping) for row in rows]}
