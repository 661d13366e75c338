"""Supply KPIs: how fast new items reach users, and how much of the usage they get.

Rolled up with the other day tables (:mod:`dataflywheel.insight.rollups` calls the two
``rebuild_*`` functions for every day it rebuilds): per day, clicks and clicks on items younger
than ``YOUNG_ITEM_DAYS`` at the time of the click; per item, its first impression and first
strong signal (kept as the minimum over rebuilt days, so rebuilding a day is idempotent).
Items created per day and the creators behind them are read from the catalogue at query time
(``created_at`` and the ``creator_id`` attribute): it is far smaller than the logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy import Connection, and_, case, delete, func, or_, select

from dataflywheel.insight import tables as T
from dataflywheel.insight.days import DAY
from dataflywheel.insight.quality import ratio
from dataflywheel.store import schema
from dataflywheel.store.dialect import day_of
from dataflywheel.store.store import dialect_insert

__all__ = [
    "CREATOR_ATTRIBUTE",
    "YOUNG_ITEM_DAYS",
    "catalogue_days",
    "rebuild_day_clicks",
    "record_first_impressions",
    "supply_summary",
]

YOUNG_ITEM_DAYS = 7
CREATOR_ATTRIBUTE = "creator_id"
CLICK = "click"
LOOKUP_CHUNK = 5_000

E = schema.events.c
IT = schema.items.c


def rebuild_day_clicks(conn: Connection, day: int, strong: set[str]) -> None:
    """Clicks and young-item clicks of ``day``; first strong signals of the items it touches."""
    in_day = and_(E.ts >= day * DAY, E.ts < (day + 1) * DAY)
    joined = schema.events.join(schema.items, IT.idx == E.item_idx)
    young = case((E.ts - IT.created_at < YOUNG_ITEM_DAYS * DAY, 1), else_=0)
    clicks, young_clicks = conn.execute(
        select(func.count(), func.coalesce(func.sum(young), 0))
        .select_from(joined)
        .where(in_day, E.type == CLICK)
    ).one()
    conn.execute(delete(T.supply_days).where(T.supply_days.c.day == day))
    if clicks:
        conn.execute(
            T.supply_days.insert().values(day=day, clicks=clicks, young_clicks=young_clicks)
        )
    if strong:
        firsts = conn.execute(
            select(IT.item_id, func.min(E.ts))
            .select_from(joined)
            .where(in_day, E.type.in_(sorted(strong)))
            .group_by(IT.item_id)
        ).all()
        _keep_earliest(conn, "first_strong", [(str(i), float(ts)) for i, ts in firsts])


def record_first_impressions(conn: Connection, firsts: dict[str, float]) -> None:
    """Each item's earliest impression of a rebuilt day (item id → timestamp)."""
    _keep_earliest(conn, "first_impression", list(firsts.items()))


def _keep_earliest(conn: Connection, column: str, rows: Sequence[tuple[str, float]]) -> None:
    """Store the times that are earlier than the ones known; in a refresh most items of a day
    already have an earlier first, so they are read (a primary-key lookup), not rewritten."""
    current = T.item_firsts.c[column]
    item_id = T.item_firsts.c.item_id
    known: dict[str, float] = {}
    for start in range(0, len(rows), LOOKUP_CHUNK):
        ids = [item for item, _ in rows[start : start + LOOKUP_CHUNK]]
        query = select(item_id, current).where(item_id.in_(ids), current.is_not(None))
        known.update((str(item), float(ts)) for item, ts in conn.execute(query))
    earlier = [(item, ts) for item, ts in rows if ts < known.get(item, np.inf)]
    if not earlier:
        return
    insert = dialect_insert(conn, T.item_firsts)
    new = insert.excluded[column]
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["item_id"],
            set_={column: case((or_(current.is_(None), new < current), new), else_=current)},
        ),
        [{"item_id": item, column: ts} for item, ts in earlier],
    )


def _creator() -> Any:
    return IT.attributes[CREATOR_ATTRIBUTE].as_string()


def catalogue_days(conn: Connection, low: int, high: int) -> dict[int, dict[str, int]]:
    """Per day in [low, high] with any: items created, distinct creators who created them, and
    the day's clicks and young-item clicks."""
    created = day_of(IT.created_at)
    out: dict[int, dict[str, int]] = {}
    for day, items, creators in conn.execute(
        select(created, func.count(), func.count(func.distinct(_creator())))
        .where(IT.created_at >= low * DAY, IT.created_at < (high + 1) * DAY)
        .group_by(created)
    ):
        out[int(day)] = {"new_items": int(items), "active_creators": int(creators)}
    s = T.supply_days.c
    for day, clicks, young in conn.execute(
        select(s.day, s.clicks, s.young_clicks).where(s.day >= low, s.day <= high)
    ):
        out.setdefault(int(day), {}).update(clicks=int(clicks), young_clicks=int(young))
    return out


def supply_summary(conn: Connection, low: int, high: int) -> dict[str, Any]:
    """Items created in [low, high]: how many, by how many creators, and the median seconds from
    creation to the first impression and to the first strong signal (of those that had one;
    an item shown before its ``created_at`` counts 0 s)."""
    f = T.item_firsts.c
    in_range = and_(IT.created_at >= low * DAY, IT.created_at < (high + 1) * DAY)
    rows = conn.execute(
        select(IT.created_at, f.first_impression, f.first_strong)
        .select_from(schema.items.outerjoin(T.item_firsts, f.item_id == IT.item_id))
        .where(in_range)
    ).all()
    creators = conn.execute(
        select(func.count(func.distinct(_creator()))).where(in_range)
    ).scalar_one()
    s = T.supply_days.c
    clicks, young = conn.execute(
        select(
            func.coalesce(func.sum(s.clicks), 0), func.coalesce(func.sum(s.young_clicks), 0)
        ).where(s.day >= low, s.day <= high)
    ).one()
    shown = [max(0.0, shown - made) for made, shown, _ in rows if shown is not None]
    strong = [max(0.0, first - made) for made, _, first in rows if first is not None]
    return {
        "young_item_days": YOUNG_ITEM_DAYS,
        "items_created": len(rows),
        "creators": int(creators),
        "items_shown": len(shown),
        "items_with_strong_signal": len(strong),
        "median_seconds_to_first_impression": _median(shown),
        "median_seconds_to_first_strong_signal": _median(strong),
        "clicks": int(clicks),
        "new_item_click_share": ratio(int(young), int(clicks)),
    }


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 1) if values else None
