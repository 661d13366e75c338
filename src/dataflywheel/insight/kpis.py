"""KPIs over any range and grain, read from the daily rollups (refreshed first).

Day rows carry activity (DAU/WAU/MAU, stickiness, new/returning/churned users), sessions,
events and strong-signal events, data quality, and what was served (CTR, catalogue coverage,
concentration). Week and month rows aggregate the day rows of the range (see docs/insight.md).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.errors import ValidationError
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import check_grain, iso, parse_day, period_start
from dataflywheel.insight.quality import model_versions, ratio
from dataflywheel.insight.rollups import gini, refresh, strong_types
from dataflywheel.insight.supply import catalogue_days, supply_summary
from dataflywheel.store import schema
from dataflywheel.store.store import Store

RETENTION_OFFSETS = (1, 7, 14, 30)
# Catalogue coverage and concentration in the summary are over the range's last days: a bounded
# read however long the range (the rows carry them per day).
SERVED_SUMMARY_DAYS = 7
# Counts that add up over a period; the rest are averaged or taken at the period's end.
_SUMMED = (
    "events",
    "strong_events",
    "sessions",
    "session_seconds",
    "new_users",
    "churned_users",
    "late_events",
    "rejected",
    "duplicates",
    "impressions",
    "engaged_impressions",
    "new_items",
    "clicks",
    "young_clicks",
)
_AVERAGED = ("dau", "returning_users", "bot_users", "served_items", "gini", "active_creators")
_AT_END = ("wau", "mau")


def kpis(
    store: Store, start: str | None = None, end: str | None = None, grain: str = "day"
) -> dict[str, Any]:
    """The ``GET /v1/kpis`` object: rows per period in [start, end] (inclusive UTC dates)."""
    grain = check_grain(grain)
    low, high = parse_day(start, "from"), parse_day(end, "to")
    if low is not None and high is not None and low > high:
        raise ValidationError(f"from ({start}) is after to ({end})", field="from")
    refresh(store)
    with store.read() as conn:
        span = data_span(conn)
        document: dict[str, Any] = {
            "grain": grain,
            "from": start or None,
            "to": end or None,
            "span": {"first": iso(span[0]), "last": iso(span[1])} if span else None,
            "rows": [],
            "retention": [],
            "summary": {},
            "supply": {},
        }
        if span is None:
            document["note"] = "the store has no events yet"
            return document
        low = span[0] if low is None else max(low, span[0])
        high = span[1] if high is None else min(high, span[1])
        document.update({"from": start or iso(low), "to": end or iso(high)})
        if low > high:
            document["note"] = (
                f"no events in this range; events span {iso(span[0])} to {iso(span[1])}"
            )
            return document
        days = day_rows(conn, store.settings, low, high)
        document["rows"] = aggregate(days, grain)
        document["retention"] = retention(conn, low, high, span[1])
        document["summary"] = summarize(conn, days, low, high)
        document["supply"] = supply_summary(conn, low, high)
        document["models"] = model_versions(conn)
    return document


def data_span(conn: Connection) -> tuple[int, int] | None:
    """First and last day with events, by event time."""
    d = T.days.c
    first, last = conn.execute(select(func.min(d.day), func.max(d.day))).one()
    return None if first is None else (int(first), int(last))


def catalogue_size(conn: Connection) -> int:
    i = schema.items.c
    return int(
        conn.execute(select(func.count()).select_from(schema.items).where(~i.hidden)).scalar_one()
    )


def day_rows(conn: Connection, settings: Settings, low: int, high: int) -> list[dict[str, Any]]:
    """Raw (summable) figures for every day in [low, high], from the rollup tables."""
    d = T.days.c
    rows: dict[int, dict[str, Any]] = {}
    for row in conn.execute(select(T.days).where(d.day >= low, d.day <= high).order_by(d.day)):
        values = dict(row._mapping)
        values.update(
            strong_events=0,
            rejected=0,
            duplicates=0,
            impressions=0,
            engaged_impressions=0,
            served_items=0,
            gini=None,
            returning_users=values["dau"] - values["new_users"],
        )
        rows[int(row.day)] = values
    strong = strong_types(settings)
    t = T.day_types.c
    for day, kind, n in conn.execute(
        select(t.day, t["type"], t.events).where(t.day >= low, t.day <= high)
    ):
        if kind in strong and day in rows:
            rows[day]["strong_events"] += int(n)
    ingest = schema.ingest_daily.c
    by_date = {iso(day): day for day in rows}
    for date, duplicates, rejected in conn.execute(
        select(ingest.date, ingest.duplicates, ingest.rejected).where(
            ingest.date >= iso(low), ingest.date <= iso(high)
        )
    ):
        if date in by_date:
            rows[by_date[date]].update(duplicates=int(duplicates), rejected=int(rejected))
    s = T.served.c
    for day, shown, engaged in conn.execute(
        select(s.day, func.sum(s.impressions), func.sum(s.engaged))
        .where(s.day >= low, s.day <= high)
        .group_by(s.day)
    ):
        if day in rows:
            rows[day].update(impressions=int(shown), engaged_impressions=int(engaged))
    sd = T.served_days.c
    for day, items, concentration in conn.execute(
        select(sd.day, sd["items"], sd.gini).where(sd.day >= low, sd.day <= high)
    ):
        if day in rows:
            rows[day].update(served_items=int(items), gini=float(concentration))
    supply = catalogue_days(conn, low, high)
    catalogue = catalogue_size(conn)
    for day, values in rows.items():
        values["catalogue"] = catalogue
        values.update(new_items=0, active_creators=0, clicks=0, young_clicks=0)
        values.update(supply.get(day, {}))
    return [rows[day] for day in sorted(rows)]


def aggregate(days: list[dict[str, Any]], grain: str) -> list[dict[str, Any]]:
    """Public rows: one per day, or per ISO week / calendar month of the range."""
    if grain == "day":
        return [_public(day["day"], day, 1) for day in days]
    periods: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for day in days:
        periods[period_start(day["day"], grain)].append(day)
    out = []
    for start, members in sorted(periods.items()):
        merged: dict[str, Any] = {k: sum(m[k] for m in members) for k in _SUMMED}
        for key in _AVERAGED:
            present = [m[key] for m in members if m[key] is not None]
            merged[key] = sum(present) / len(present) if present else None
        merged.update({k: members[-1][k] for k in _AT_END})
        merged["catalogue"] = members[-1]["catalogue"]
        out.append(_public(start, merged, len(members)))
    return out


def _public(day: int, v: dict[str, Any], n_days: int) -> dict[str, Any]:
    dau = v["dau"]
    row = {
        "date": iso(day),
        "dau": dau if n_days == 1 else round(dau, 2),
        "wau": v["wau"],
        "mau": v["mau"],
        "stickiness": ratio(dau, v["mau"]),
        "new_users": v["new_users"],
        "returning_users": v["returning_users"] if n_days == 1 else round(v["returning_users"], 2),
        "churned_users": v["churned_users"],
        "sessions": v["sessions"],
        "avg_session_seconds": ratio(v["session_seconds"], v["sessions"], 1) or 0.0,
        "events": v["events"],
        "strong_events": v["strong_events"],
        "strong_share": ratio(v["strong_events"], v["events"]),
        "events_per_user": ratio(v["events"], n_days * dau, 2),
        "late_events": v["late_events"],
        "bot_users": v["bot_users"] if n_days == 1 else round(v["bot_users"], 2),
        "rejected": v["rejected"],
        "duplicates": v["duplicates"],
        "impressions": v["impressions"],
        "engaged_impressions": v["engaged_impressions"],
        "ctr": ratio(v["engaged_impressions"], v["impressions"]),
        "served_items": v["served_items"] if n_days == 1 else round(v["served_items"], 1),
        "coverage": ratio(v["served_items"], v["catalogue"]),
        "gini": None if v["gini"] is None else round(v["gini"], 4),
        "new_items": v["new_items"],
        "active_creators": v["active_creators"] if n_days == 1 else round(v["active_creators"], 2),
        "clicks": v["clicks"],
        "new_item_click_share": ratio(v["young_clicks"], v["clicks"]),
    }
    if n_days > 1:
        row["days"] = n_days
    return row


def retention(conn: Connection, low: int, high: int, last: int) -> list[dict[str, Any]]:
    """N-day retention of the cohorts first seen in [low, high]: the share of a cohort active
    exactly N days after its first day (null while that day is not in the data yet)."""
    c = T.cohorts.c
    offsets = (0, *RETENTION_OFFSETS)
    sizes: dict[int, dict[int, int]] = defaultdict(dict)
    for cohort, day, users in conn.execute(
        select(c.cohort_day, c.day, c.users).where(
            c.cohort_day >= low, c.cohort_day <= high, (c.day - c.cohort_day).in_(offsets)
        )
    ):
        sizes[int(cohort)][int(day) - int(cohort)] = int(users)
    out = []
    for cohort in sorted(sizes):
        size = sizes[cohort].get(0, 0)
        row: dict[str, Any] = {"cohort": iso(cohort), "users": size}
        for n in RETENTION_OFFSETS:
            row[f"day_{n}"] = (
                ratio(sizes[cohort].get(n, 0), size) if cohort + n <= last and size else None
            )
        out.append(row)
    return out


def summarize(conn: Connection, days: list[dict[str, Any]], low: int, high: int) -> dict[str, Any]:
    """Totals over the range; coverage and concentration of what was served in its last days."""
    total = {k: sum(d[k] for d in days) for k in _SUMMED}
    dau = [d["dau"] for d in days]
    si = T.served_items.c
    slots = [
        int(n)
        for (n,) in conn.execute(
            select(func.sum(si.slots)).where(si.day >= low, si.day <= high).group_by(si.item_id)
        )
    ]
    catalogue = days[-1]["catalogue"] if days else 0
    return {
        "days": len(days),
        "events": total["events"],
        "strong_events": total["strong_events"],
        "strong_share": ratio(total["strong_events"], total["events"]),
        "avg_dau": round(sum(dau) / len(dau), 2) if dau else 0,
        "peak_dau": max(dau, default=0),
        "new_users": total["new_users"],
        "sessions": total["sessions"],
        "avg_session_seconds": ratio(total["session_seconds"], total["sessions"], 1) or 0.0,
        "late_events": total["late_events"],
        "rejected": total["rejected"],
        "duplicates": total["duplicates"],
        "impressions": total["impressions"],
        "ctr": ratio(total["engaged_impressions"], total["impressions"]),
        "served_days": min(SERVED_SUMMARY_DAYS, high - low + 1),
        "served_items": len(slots),
        "catalogue": catalogue,
        "coverage": ratio(len(slots), catalogue),
        "gini": round(gini(slots), 4) if slots else None,
    }
