"""Model quality per version: offline metrics from the registry, online click-through from
what each version served, and the data each version learned from."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import iso
from dataflywheel.store import schema

# The offline metric trends are read on, in order of preference.
PRIMARY_METRICS = ("ndcg@10", "map@10", "recall@10", "precision@10", "hit_rate@10", "auc")


def version_key(version: str, created_at: float) -> tuple[float, int, str]:
    """Order versions by creation, then by the number in ``v12`` for ties."""
    digits = re.findall(r"\d+", version)
    return (created_at, int(digits[-1]) if digits else 0, version)


def primary_metric(versions: list[dict[str, Any]]) -> str | None:
    """The first preferred metric that versions report, else any numeric one they share."""
    reported = [
        {k for k, v in (m["metrics"] or {}).items() if isinstance(v, int | float)} for m in versions
    ]
    if not reported:
        return None
    for name in PRIMARY_METRICS:
        if any(name in keys for keys in reported):
            return name
    shared = set.intersection(*reported)
    return min(shared) if shared else None


def online_by_version(conn: Connection) -> dict[str, dict[str, Any]]:
    """Impressions, engaged impressions and CTR per served version (``""`` = no model)."""
    s = T.served.c
    query = select(
        s.model_version,
        func.sum(s.impressions),
        func.sum(s.engaged),
        func.sum(s.strong_engaged),
        func.min(s.day),
        func.max(s.day),
    ).group_by(s.model_version)
    out: dict[str, dict[str, Any]] = {}
    for version, shown, engaged, strong, first, last in conn.execute(query):
        out[version] = {
            "impressions": int(shown),
            "engaged": int(engaged),
            "strong_engaged": int(strong),
            "ctr": ratio(engaged, shown),
            "first_served": iso(int(first)),
            "last_served": iso(int(last)),
        }
    return out


def model_versions(conn: Connection) -> list[dict[str, Any]]:
    """Every registered version in creation order, with its snapshot and online results."""
    m, s = schema.models.c, schema.snapshots.c
    rows = conn.execute(
        select(
            m.version,
            m.name,
            m.status,
            m.created_at,
            m.promoted_at,
            m.metrics,
            m.snapshot_id,
            s.watermark,
            s.n_events,
            s.created_at.label("snapshot_at"),
        ).select_from(schema.models.outerjoin(schema.snapshots, s.id == m.snapshot_id))
    ).all()
    online = online_by_version(conn)
    versions = []
    for row in sorted(rows, key=lambda r: version_key(r.version, r.created_at)):
        horizon = _event_time_at(conn, row.watermark) if row.watermark is not None else None
        versions.append(
            {
                "version": row.version,
                "name": row.name,
                "status": row.status,
                "created_at": row.created_at,
                "promoted_at": row.promoted_at,
                "metrics": row.metrics or {},
                "snapshot_id": row.snapshot_id,
                "watermark": int(row.watermark) if row.watermark is not None else None,
                "snapshot_events": int(row.n_events) if row.n_events is not None else None,
                "data_until": iso(int(horizon // 86_400)) if horizon is not None else None,
                "data_until_ts": horizon,
                "online": online.get(row.version),
            }
        )
    return versions


def _event_time_at(conn: Connection, watermark: int) -> float | None:
    """Event time of the newest event a snapshot includes (its data horizon)."""
    e = schema.events.c
    ts = conn.execute(
        select(e.ts).where(e.id <= watermark).order_by(e.id.desc()).limit(1)
    ).scalar_one_or_none()
    return float(ts) if ts is not None else None


def version_days(conn: Connection, low: int, high: int) -> list[dict[str, Any]]:
    """Online CTR per (day, version) in [low, high], for the per-version chart."""
    s = T.served.c
    rows = conn.execute(
        select(s.day, s.model_version, func.sum(s.impressions), func.sum(s.engaged))
        .where(s.day >= low, s.day <= high)
        .group_by(s.day, s.model_version)
        .order_by(s.day, s.model_version)
    )
    return [
        {
            "date": iso(int(day)),
            "model_version": version or None,
            "impressions": int(shown),
            "engaged": int(engaged),
            "ctr": ratio(engaged, shown),
        }
        for day, version, shown, engaged in rows
    ]


def transitions(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """The newest model lifecycle transitions (promotions, rollbacks...), oldest first."""
    t = schema.model_transitions.c
    rows = conn.execute(
        select(t.version, t.from_status, t.to_status, t.reason, t.ts)
        .order_by(t.ts.desc(), t.id.desc())
        .limit(limit)
    ).all()
    return [
        {"version": v, "from": f, "to": to, "reason": r, "ts": ts}
        for v, f, to, r, ts in reversed(rows)
    ]


def ratio(numerator: float | None, denominator: float | None, digits: int = 4) -> float | None:
    if not denominator:
        return None
    return round(float(numerator or 0) / float(denominator), digits)


def clicked_slots(
    conn: Connection, settings: Settings, recommendation_ids: list[str]
) -> set[tuple[str, str]]:
    """The (recommendation id, item id) pairs of the given lists that got positive feedback."""
    e, items = schema.events.c, schema.items.c
    positive = [name for name, signal in settings.signals.items() if signal.weight > 0]
    clicked: set[tuple[str, str]] = set()
    for start in range(0, len(recommendation_ids), 500):
        found = conn.execute(
            select(e.recommendation_id, items.item_id)
            .join(schema.items, items.idx == e.item_idx)
            .where(
                e.recommendation_id.in_(recommendation_ids[start : start + 500]),
                e.type.in_(positive),
            )
        ).all()
        clicked.update((str(r), str(item)) for r, item in found)
    return clicked
