"""Condition 2, the data becomes a better model: collected data reaches models, and they improve.

Judged on the newest trained version (the champion may lawfully stay put while the gates keep
candidates out): its snapshot covers most stored events and is recent, versions keep being
trained on new snapshots, and the offline metric does not fall across versions. Evidence also
carries the data-to-model latency and how long unused data has been waiting.
"""

from __future__ import annotations

import math
from statistics import median
from typing import Any

import numpy as np
from sqlalchemy import Connection, func, select

from dataflywheel.insight.days import DAY
from dataflywheel.insight.health.common import Condition
from dataflywheel.insight.quality import model_versions, primary_metric
from dataflywheel.store import schema

COVERAGE_PASS = 0.8
"""Pass when the newest version's snapshot saw at least 80% of all stored events ..."""
COVERAGE_FAIL = 0.5
"""... and fail below 50%: most collected data never reached a model."""
LAG_PASS_DAYS = 7
"""Pass when the newest version's data ends at most 7 days before the newest event day ..."""
LAG_FAIL_DAYS = 14
"""... and fail beyond 14 days: the models stopped learning."""
QUALITY_DECLINE_TOLERANCE = 0.05
"""Relative fall of the offline metric from the first to the last version that still passes."""


def condition(conn: Connection, total_events: int, last_day: int) -> Condition:
    versions = model_versions(conn)
    if not versions:
        return Condition(
            2,
            "fail",
            {"models": 0},
            1.0,
            "Train a model (`flywheel train`) and run the loop (`flywheel serve`) so it retrains "
            "as events arrive.",
        )
    champions = [v for v in versions if v["status"] == "champion"]
    current = champions[-1] if champions else versions[-1]
    newest = versions[-1]
    e = schema.events.c
    coverage = _coverage(conn, current["watermark"], total_events)
    newest_coverage = _coverage(conn, newest["watermark"], total_events)
    horizon = current["data_until_ts"]
    lag_days = last_day - int(horizon // DAY) if horizon is not None else None
    watermarks = sorted({v["watermark"] for v in versions if v["watermark"] is not None})
    latencies = _latencies(conn, versions)
    newest_event = conn.execute(
        select(e.id, e.received_at).order_by(e.id.desc()).limit(1)
    ).one_or_none()
    pending = None
    if newest_event is not None and current["watermark"] is not None:
        first_unused = conn.execute(
            select(e.received_at).where(e.id > current["watermark"]).order_by(e.id).limit(1)
        ).scalar_one_or_none()
        pending = 0.0 if first_unused is None else max(0.0, newest_event[1] - first_unused)
    metric = primary_metric(versions)
    trend = _metric_trend(versions, metric)
    evidence = {
        "models": len(versions),
        "retrained_on_new_data": max(len(watermarks) - 1, 0),
        "current": current["version"],
        "current_is_champion": bool(champions),
        "current_data_until": current["data_until"],
        "data_lag_days": lag_days,
        "coverage": coverage,
        "newest": newest["version"],
        "newest_coverage": newest_coverage,
        "data_to_model_seconds_median": round(median(latencies), 1) if latencies else None,
        "unused_data_waiting_seconds": round(pending, 1) if pending is not None else None,
        "metric": metric,
        "metric_trend": trend,
        "thresholds": {
            "coverage_pass": COVERAGE_PASS,
            "coverage_fail": COVERAGE_FAIL,
            "lag_pass_days": LAG_PASS_DAYS,
            "lag_fail_days": LAG_FAIL_DAYS,
        },
    }
    confidence = math.sqrt(len(versions) / 5)
    # Whether collected data reaches models is judged on the newest trained version (the
    # champion may lawfully stay put while the gates keep candidates out).
    newest_horizon = newest["data_until_ts"]
    newest_lag = last_day - int(newest_horizon // DAY) if newest_horizon is not None else None
    evidence["newest_data_lag_days"] = newest_lag
    stale = newest_lag is None or newest_lag > LAG_FAIL_DAYS
    if (newest_coverage or 0.0) < COVERAGE_FAIL or stale:
        action = (
            "Collected data is not reaching a model: retrain on fresh snapshots (run the "
            "loop with `flywheel serve`, or schedule `flywheel train`)."
        )
        return Condition(2, "fail", evidence, confidence, action)
    declining = trend is not None and trend["relative_change"] < -QUALITY_DECLINE_TOLERANCE
    fresh = (newest_coverage or 0.0) >= COVERAGE_PASS and (newest_lag or 0) <= LAG_PASS_DAYS
    if fresh and len(watermarks) >= 2 and not declining:
        if newest is not current and (
            (coverage or 0.0) < COVERAGE_PASS or (lag_days or 0) > LAG_PASS_DAYS
        ):
            action = (
                f"Models keep learning from new data, but the champion {current['version']} is "
                f"older than {newest['version']}: check that the gates promote real gains."
            )
        else:
            action = "Keep the retraining cadence; watch data-to-model latency."
        return Condition(2, "pass", evidence, confidence, action)
    if declining:
        action = (
            f"Offline {metric} falls across versions: check data quality (bots, duplicates, "
            "late events) and the evaluation holdout."
        )
    elif len(watermarks) < 2:
        action = "Only one snapshot was ever trained on: retrain as new data arrives."
    else:
        action = "Retrain more often so the champion learns from recent data."
    return Condition(2, "warn", evidence, confidence, action)


def _coverage(conn: Connection, watermark: int | None, total: int) -> float | None:
    """Share of all stored events with ids up to ``watermark`` (what that snapshot saw)."""
    if watermark is None or total <= 0:
        return None
    e = schema.events.c
    unused = int(
        conn.execute(
            select(func.count()).select_from(schema.events).where(e.id > watermark)
        ).scalar_one()
    )
    return round(max(0.0, 1.0 - unused / total), 4)


def _latencies(conn: Connection, versions: list[dict[str, Any]]) -> list[float]:
    """Per version trained on new data: seconds from the arrival of the middle of that new
    data to the version's creation."""
    e = schema.events.c
    out = []
    previous = 0
    for version in versions:
        mark = version["watermark"]
        if mark is None or mark <= previous:
            continue
        arrived = conn.execute(
            select(e.received_at).where(e.id >= (previous + 1 + mark) // 2).order_by(e.id).limit(1)
        ).scalar_one_or_none()
        if arrived is not None:
            out.append(max(0.0, version["created_at"] - float(arrived)))
        previous = mark
    return out


def _metric_trend(versions: list[dict[str, Any]], metric: str | None) -> dict[str, Any] | None:
    if metric is None:
        return None
    values = [
        (v["version"], float(v["metrics"][metric]))
        for v in versions
        if isinstance((v["metrics"] or {}).get(metric), int | float)
    ]
    if len(values) < 2:
        return None
    first, last = values[0][1], values[-1][1]
    slope = float(np.polyfit(np.arange(len(values)), [v for _, v in values], 1)[0])
    return {
        "first": round(first, 4),
        "last": round(last, 4),
        "best": round(max(v for _, v in values), 4),
        "relative_change": round((last - first) / abs(first), 4) if first else 0.0,
        "slope_per_version": round(slope, 5),
        "versions": [{"version": k, metric: round(v, 4)} for k, v in values[-10:]],
    }
