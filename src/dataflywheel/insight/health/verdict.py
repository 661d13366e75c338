"""The flywheel health verdict: does each of the four conditions hold, on the store's evidence?

Conditions (docs/insight.md explains each rule and threshold), one module each:
1. high-signal data is collected (:mod:`.high_signal`);
2. it becomes a better model (:mod:`.learning`);
3. the improvement is perceivable (:mod:`.perceivable`);
4. better models drive more usage (:mod:`.usage`).

The verdict is ``spinning`` when all pass, ``stalled`` at the first condition that does not pass,
and ``insufficient-data`` when the store is too small to judge. Only stored facts are read.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import iso
from dataflywheel.insight.health import high_signal, learning, perceivable, usage
from dataflywheel.insight.kpis import data_span
from dataflywheel.insight.rollups import refresh
from dataflywheel.learn.value.cache import cache_path, load
from dataflywheel.store.store import Store

MIN_DAYS = 7
"""Days with events below which the store is too young to judge (``insufficient-data``) ..."""
MIN_EVENTS = 1_000
"""... or events below which it is too small."""
WINDOW_DAYS = 90
"""The most recent days of data the conditions look at."""
VALUE_SLICE_KINDS = ("event_type", "strength", "labels")
"""Slices of the value-of-data measure shown as condition 1's evidence (kinds of signal)."""


def health(store: Store) -> dict[str, Any]:
    """The ``GET /v1/health/flywheel`` object."""
    refresh(store)
    # The value of data is measured by the loop or `flywheel value`, never inside this call.
    value = load(cache_path(store, store.settings.artifacts_dir()))
    with store.read() as conn:
        document = assess(conn, store.settings)
    if value is not None:
        _add_value_evidence(document, value, store.latest_event_id())
    return document


def _add_value_evidence(document: dict[str, Any], value: dict[str, Any], latest: int) -> None:
    """Condition 1 gets which data carries value (per slice), condition 2 what the next
    doubling of data is expected to add; both say which events the measure saw."""
    measured = {"watermark": value["watermark"], "stale": value["watermark"] != latest}
    slices = [
        {key: row[key] for key in ("kind", "name", "delta", "low", "high", "verdict")}
        for row in value.get("slices", [])
        if row.get("kind") in VALUE_SLICE_KINDS
    ]
    for condition in document["conditions"]:
        if condition["id"] == 1 and slices:
            condition["evidence"]["value_by_slice"] = {**measured, "slices": slices}
        elif condition["id"] == 2 and value.get("next_doubling"):
            condition["evidence"]["value_of_more_data"] = {
                **measured,
                "next_doubling": value["next_doubling"],
                "diminishing": value.get("diminishing"),
            }


def assess(conn: Connection, settings: Settings) -> dict[str, Any]:
    """Evaluate the four conditions on what the store holds."""
    span = data_span(conn)
    d = T.days.c
    totals = conn.execute(
        select(func.coalesce(func.sum(d.events), 0), func.count()).where(d.events > 0)
    ).one()
    events, active_days = int(totals[0]), int(totals[1])
    if span is None:
        low = high = 0
    else:
        high = span[1]
        low = max(span[0], high - WINDOW_DAYS + 1)
    conditions = [
        high_signal.condition(conn, settings, low, high),
        learning.condition(conn, events, high),
        perceivable.condition(conn, settings, low, high),
        usage.condition(conn, settings, low, high),
    ]
    document: dict[str, Any] = {
        "verdict": "spinning",
        "stalled_at": None,
        "window": {"from": iso(low), "to": iso(high)} if span else None,
        "store": {"events": events, "active_days": active_days},
        "conditions": [asdict(c) for c in conditions],
    }
    if active_days < MIN_DAYS or events < MIN_EVENTS:
        document["verdict"] = "insufficient-data"
        document["reason"] = (
            f"{events} events on {active_days} days; need at least {MIN_EVENTS} events "
            f"on {MIN_DAYS} days to judge the flywheel"
        )
        return document
    for condition in conditions:
        if condition.status != "pass":
            document.update(verdict="stalled", stalled_at=condition.id)
            break
    return document
