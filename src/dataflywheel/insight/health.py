"""The flywheel health verdict: does each of the four conditions hold, on the store's evidence?

Conditions (docs/insight.md explains each rule and threshold):
1. high-signal data is collected — strong-signal share of feedback, and its trend;
2. it becomes a better model — collected data reaches models: the newest version's snapshot
   covers most events and is recent, versions keep being trained, offline metrics do not fall;
3. the improvement is perceivable — serving follows the model (logged propensities are not
   uniform), and newer versions get a higher online CTR than where serving started (within
   experiments when arms served different versions, else over time);
4. better models drive more usage — well-served users come back more the next day, or days of
   higher online quality are followed by more active users.

The verdict is ``spinning`` when all pass, ``stalled`` at the first condition that does not pass,
and ``insufficient-data`` when the store is too small to judge. Only stored facts are read.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any, Literal

import numpy as np
import orjson
from scipy import stats
from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import DAY, iso
from dataflywheel.insight.kpis import data_span
from dataflywheel.insight.quality import model_versions, primary_metric, ratio, version_key
from dataflywheel.insight.rollups import refresh, strong_types
from dataflywheel.store import schema
from dataflywheel.store.store import Store

Status = Literal["pass", "warn", "fail"]

# Whole store: below these there is nothing to judge.
MIN_DAYS = 7
MIN_EVENTS = 1_000
WINDOW_DAYS = 90  # the most recent days of data the conditions look at
# 1. Share of feedback events (types with a non-zero weight) that are strong signals.
STRONG_SHARE_PASS = 0.02
STRONG_SHARE_FAIL = 0.005
STRONG_TREND_FLOOR = 0.5  # the recent half's share may not fall below half the earlier one's
# 2. Share of all events the champion learned from, and how far its data lags the newest day.
COVERAGE_PASS = 0.8
COVERAGE_FAIL = 0.5
LAG_PASS_DAYS = 7
LAG_FAIL_DAYS = 14
QUALITY_DECLINE_TOLERANCE = 0.05  # relative fall of the offline metric tolerated
# 3. A perceivable online improvement: relative CTR lift, on enough impressions, at 95%.
PERCEIVABLE_LIFT = 0.05
MIN_IMPRESSIONS = 500
MIN_SLOTS = 200  # exploration slots needed before model-vs-exploration click-through counts
Z_95 = 1.96
RANDOMNESS_SAMPLE = 2_000  # newest model-served lists whose propensities are read
UNIFORM_RATIO = 1.5  # a list is near uniform when max propensity < 1.5 × min propensity
MAX_BLOCKS = 4  # later versions are pooled into at most this many consecutive blocks
UNIFORM_MAX = 0.5  # ... and no item was likely to be shown (1.0 = deterministic serving)
UNIFORM_SHARE_FAIL = 0.9  # share of near-uniform lists at which serving counts as random
# 4. Engagement's response to online quality, over paired days.
MIN_DAILY_IMPRESSIONS = 50
ALPHA = 0.05
MIN_PAIRED_DAYS = 14  # days with enough impressions for the aggregate (day-level) response
CORRELATION_PASS = 0.3  # Spearman of daily CTR with next-day DAU
CORRELATION_FAIL = 0.1
RESPONSE_DAYS = 28  # recent days whose served users are followed to the next day
RETURN_LIFT = 0.1  # relative next-day return lift of well-served user-days needed to pass

NAMES = {
    1: "high-signal data is collected",
    2: "it becomes a better model",
    3: "the improvement is perceivable",
    4: "better models drive more usage",
}


@dataclass
class Condition:
    id: int
    status: Status
    evidence: dict[str, Any]
    confidence: float
    next_action: str
    name: str = field(init=False)

    def __post_init__(self) -> None:
        self.name = NAMES[self.id]
        self.confidence = round(min(1.0, max(0.0, self.confidence)), 2)


def health(store: Store) -> dict[str, Any]:
    """The ``GET /v1/health/flywheel`` object."""
    refresh(store)
    with store.read() as conn:
        return assess(conn, store.settings)


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
        _signal(conn, settings, low, high),
        _learning(conn, events, high),
        _perceivable(conn, settings, low, high),
        _usage(conn, settings, low, high),
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


# 1 ---------------------------------------------------------------------------------------------


def _signal(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
    strong = strong_types(settings)
    silent = {n for n, s in settings.signals.items() if s.weight == 0}
    middle = (low + high) // 2
    t = T.day_types.c
    by_type: dict[str, int] = defaultdict(int)
    halves = [[0, 0], [0, 0]]  # [strong, feedback] before / after the window's middle
    for day, kind, n in conn.execute(
        select(t.day, t["type"], t.events).where(t.day >= low, t.day <= high)
    ):
        by_type[kind] += int(n)
        if kind in silent:
            continue
        half = halves[int(day > middle)]
        half[1] += int(n)
        half[0] += int(n) if kind in strong else 0
    strong_n = halves[0][0] + halves[1][0]
    feedback = halves[0][1] + halves[1][1]
    share = ratio(strong_n, feedback) or 0.0
    earlier, recent = ratio(*halves[0]), ratio(*halves[1])
    evidence = {
        "strong_events": strong_n,
        "feedback_events": feedback,
        "strong_share": share,
        "strong_share_earlier": earlier,
        "strong_share_recent": recent,
        "strong_types": {k: v for k, v in sorted(by_type.items()) if k in strong},
        "event_types": dict(sorted(by_type.items())),
        "thresholds": {"pass": STRONG_SHARE_PASS, "fail": STRONG_SHARE_FAIL},
    }
    confidence = math.sqrt(feedback / 10_000)
    if strong_n == 0 or share < STRONG_SHARE_FAIL:
        return Condition(
            1,
            "fail",
            evidence,
            confidence,
            "Collect explicit feedback (likes/dislikes, ratings, corrections, purchases): clicks "
            "and views alone are weak signal. Add feedback controls or a label queue.",
        )
    collapsing = bool(earlier) and (recent or 0.0) < STRONG_TREND_FLOOR * (earlier or 0.0)
    if share >= STRONG_SHARE_PASS and not collapsing:
        return Condition(
            1, "pass", evidence, confidence, "Keep explicit feedback easy to give; watch its trend."
        )
    return Condition(
        1,
        "warn",
        evidence,
        confidence,
        "Strong-signal feedback is scarce or falling: make it easier to give, or ask for it "
        "(triggers and a label queue) where the model is unsure.",
    )


# 2 ---------------------------------------------------------------------------------------------


def _learning(conn: Connection, total_events: int, last_day: int) -> Condition:
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


# 3 ---------------------------------------------------------------------------------------------


def _perceivable(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
    s = T.served.c
    rows = conn.execute(
        select(
            s.model_version,
            s.experiment_id,
            s.arm,
            func.sum(s.impressions),
            func.sum(s.engaged),
            func.max(s.day),
        )
        .where(s.day >= low, s.day <= high)
        .group_by(s.model_version, s.experiment_id, s.arm)
    ).all()
    shown = sum(int(r[3]) for r in rows)
    engaged = sum(int(r[4]) for r in rows)
    order = _version_order(conn)
    per_version: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for version, _exp, _arm, n, k, _last in rows:
        per_version[version][0] += int(n)
        per_version[version][1] += int(k)
    ranked = sorted(per_version, key=lambda v: order.get(v, (-1.0, 0, v)))
    evidence: dict[str, Any] = {
        "impressions": shown,
        "engaged_impressions": engaged,
        "ctr_by_version": [
            {"version": v or None, "impressions": n, "ctr": ratio(k, n)}
            for v in ranked[-10:]
            for n, k in [per_version[v]]
        ],
        "thresholds": {
            "perceivable_lift": PERCEIVABLE_LIFT,
            "min_impressions": MIN_IMPRESSIONS,
            "max_blocks": MAX_BLOCKS,
            "uniform_share_fail": UNIFORM_SHARE_FAIL,
        },
    }
    if shown == 0:
        return Condition(
            3,
            "fail",
            evidence,
            1.0,
            "Nothing served is logged: serve recommendations through the API "
            "(GET /v1/recommendations) so each list is recorded as an impression.",
        )
    if engaged == 0:
        return Condition(
            3,
            "fail",
            evidence,
            1.0,
            "No feedback is linked to what was served: send the recommendation_id with the "
            "events that follow a recommendation.",
        )
    randomness = _serving_randomness(conn, low, high)
    evidence["serving"] = randomness
    if randomness["lists"] >= MIN_IMPRESSIONS and randomness["uniform_share"] >= UNIFORM_SHARE_FAIL:
        return Condition(
            3,
            "fail",
            evidence,
            math.sqrt(randomness["lists"] / (10 * MIN_IMPRESSIONS)),
            "Served lists ignore the model: their logged propensities are near uniform, so "
            "what users see is random. Lower the exploration (temperature, epsilon) so the "
            "champion's scores decide the order.",
        )
    slots = _model_vs_exploration(conn, settings, low, high)
    evidence["model_vs_exploration"] = slots
    comparison = _experiment_comparison(rows, order)
    if comparison is None and _clear_lift(slots):
        return Condition(
            3,
            "pass",
            evidence,
            math.sqrt(min(slots["impressions_older"], 10 * MIN_SLOTS) / (10 * MIN_SLOTS)),
            "Users click the model's picks clearly more than exploration picks at the same "
            "positions; confirm new champions with an A/B test.",
        )
    if comparison is None:
        served_versions = [v for v in ranked if per_version[v][0] > 0]
        if len(served_versions) < 2:
            return Condition(
                3,
                "warn",
                evidence,
                0.3,
                "Only one model version has served: newer versions must reach users before "
                "their improvement can be perceived.",
            )
        comparison = _over_time_comparison(served_versions, per_version)
    evidence["comparison"] = comparison
    smallest = min(comparison["impressions_older"], comparison["impressions_newer"])
    confidence = math.sqrt(smallest / (10 * MIN_IMPRESSIONS))
    if smallest < MIN_IMPRESSIONS:
        return Condition(
            3,
            "warn",
            evidence,
            confidence,
            "Too few impressions to compare versions yet: keep serving, or run an experiment.",
        )
    lift_high = comparison["relative_lift_high"]
    if comparison["diff_low"] > 0:
        return Condition(3, "pass", evidence, confidence, "Confirm new champions with an A/B test.")
    if comparison["diff"] <= 0 or (lift_high is not None and lift_high < PERCEIVABLE_LIFT):
        return Condition(
            3,
            "fail",
            evidence,
            confidence,
            "Newer models do not raise online click-through: check that serving uses the "
            "champion's scores (not a fixed or popularity list) and that offline metrics predict "
            "online ones.",
        )
    return Condition(
        3,
        "warn",
        evidence,
        confidence,
        "The online lift of newer versions is not yet clear: run an experiment between the "
        "champion and the previous version.",
    )


def _over_time_comparison(
    served_versions: list[str], per_version: dict[str, list[int]]
) -> dict[str, Any]:
    """Where serving started against the best later block of versions.

    The starting point is the first versions to serve, pooled up to ``MIN_IMPRESSIONS``; when
    that is the cold-start list (no model), the first model versions are a second starting
    point. Later versions are pooled into at most ``MAX_BLOCKS`` consecutive blocks (equal
    shares of the later impressions). Every (start, later block) pair is a comparison, and the
    interval is widened for their number (Bonferroni); the most favourable one is reported."""
    runs = [served_versions]
    if served_versions[0] == "" and len(served_versions) > 2:
        runs.append(served_versions[1:])
    split = [b for b in (_blocks(run, per_version) for run in runs) if len(b) >= 2]
    if not split:
        half = max(1, len(served_versions) // 2)
        older = [sum(per_version[v][i] for v in served_versions[:half]) for i in (0, 1)]
        newer = [sum(per_version[v][i] for v in served_versions[half:]) for i in (0, 1)]
        return {
            "method": "newer versions vs older versions, over time",
            "older": [v or None for v in served_versions[:half]],
            "newer": [v or None for v in served_versions[half:]],
            "comparisons": 1,
            **two_proportions(older, newer),
        }
    comparisons = sum(len(blocks) - 1 for blocks in split)
    z = float(stats.norm.ppf(1 - ALPHA / comparisons / 2))
    best: dict[str, Any] | None = None
    for blocks in split:
        (first, base), later = blocks[0], blocks[1:]
        members, counts = max(later, key=lambda b: b[1][1] / b[1][0])
        candidate = {
            "method": "first versions vs the best later block of versions, over time",
            "older": [v or None for v in first],
            "newer": [v or None for v in members],
            "comparisons": comparisons,
            "ctr_by_block": [
                {
                    "first": m[0] or None,
                    "last": m[-1] or None,
                    "impressions": c[0],
                    "ctr": ratio(c[1], c[0]),
                }
                for m, c in blocks
            ],
            **two_proportions(base, counts, z),
        }
        if best is None or candidate["diff_low"] > best["diff_low"]:
            best = candidate
    assert best is not None
    return best


def _blocks(
    versions: list[str], per_version: dict[str, list[int]]
) -> list[tuple[list[str], list[int]]]:
    """Consecutive versions pooled: the first block up to ``MIN_IMPRESSIONS``, the later ones
    in at most ``MAX_BLOCKS`` equal shares of the remaining impressions."""
    blocks: list[tuple[list[str], list[int]]] = []
    members: list[str] = []
    counts = [0, 0]
    total = sum(per_version[v][0] for v in versions)
    size = MIN_IMPRESSIONS
    for version in versions:
        members.append(version)
        counts = [counts[0] + per_version[version][0], counts[1] + per_version[version][1]]
        if counts[0] >= size:
            blocks.append((members, counts))
            if len(blocks) == 1:
                size = max(MIN_IMPRESSIONS, math.ceil((total - counts[0]) / MAX_BLOCKS))
            members, counts = [], [0, 0]
    if members:
        if len(blocks) >= 2 and counts[0] < size // 2:
            merged = blocks.pop()
            members = merged[0] + members
            counts = [merged[1][0] + counts[0], merged[1][1] + counts[1]]
        blocks.append((members, counts))
    return blocks


def _model_vs_exploration(
    conn: Connection, settings: Settings, low: int, high: int
) -> dict[str, Any]:
    """Click-through of the slots the model chose (propensity ≥ 0.5) against the slots
    exploration filled (propensity < 0.5) in the newest ``RANDOMNESS_SAMPLE`` model-served lists.

    Exploration replaces slots at random positions, so both groups see the same positions; a
    clear lift means users perceive the model's choices as better than the alternative. Unlike
    CTR across versions it does not drift down as users exhaust their best items.
    """
    i, e = schema.impressions.c, schema.events.c
    lists = conn.execute(
        select(i.recommendation_id, i.item_ids, i.propensities)
        .where(i.model_version.is_not(None), i.ts >= low * DAY, i.ts < (high + 1) * DAY)
        .order_by(i.id.desc())
        .limit(RANDOMNESS_SAMPLE)
    ).all()
    positive = [name for name, signal in settings.signals.items() if signal.weight > 0]
    clicked: set[tuple[str, str]] = set()
    ids = [row[0] for row in lists]
    for start in range(0, len(ids), 500):
        found = conn.execute(
            select(e.recommendation_id, schema.items.c.item_id)
            .join(schema.items, schema.items.c.idx == e.item_idx)
            .where(e.recommendation_id.in_(ids[start : start + 500]), e.type.in_(positive))
        ).all()
        clicked.update((str(r), str(item)) for r, item in found)
    explored, chosen = [0, 0], [0, 0]
    for rec, raw_items, raw_props in lists:
        items = orjson.loads(raw_items) if isinstance(raw_items, str | bytes) else raw_items
        props = orjson.loads(raw_props) if isinstance(raw_props, str | bytes) else raw_props
        for item, p in zip(items or (), props or (), strict=False):
            group = chosen if float(p) >= 0.5 else explored
            group[0] += 1
            group[1] += (rec, str(item)) in clicked
    return {
        "older": "exploration slots",
        "newer": "model slots",
        **two_proportions(explored, chosen),
    }


def _clear_lift(slots: dict[str, Any]) -> bool:
    """Enough exploration slots, and the model's slots win by a clear relative margin (the
    lower end of the interval, relative to exploration's click-through)."""
    base = slots["ctr_older"]
    return (
        slots["impressions_older"] >= MIN_SLOTS
        and base > 0
        and slots["diff_low"] / base >= PERCEIVABLE_LIFT
    )


def _serving_randomness(conn: Connection, low: int, high: int) -> dict[str, Any]:
    """How random model-served lists are, from the propensities logged with the newest
    ``RANDOMNESS_SAMPLE`` of them: a list is near uniform when its largest propensity is under
    ``UNIFORM_RATIO`` times its smallest and under ``UNIFORM_MAX`` (every shown item was about
    equally, and not very, likely; propensities of 1 are deterministic serving)."""
    i = schema.impressions.c
    rows = conn.execute(
        select(i.propensities)
        .where(
            i.model_version.is_not(None),
            i.ts >= low * DAY,
            i.ts < (high + 1) * DAY,
        )
        .order_by(i.id.desc())
        .limit(RANDOMNESS_SAMPLE)
    ).all()
    lists = uniform = 0
    for (raw,) in rows:
        props = orjson.loads(raw) if isinstance(raw, str | bytes) else raw
        values = [float(p) for p in props or () if isinstance(p, int | float) and p > 0]
        if len(values) < 2:
            continue
        lists += 1
        uniform += max(values) < min(UNIFORM_MAX, UNIFORM_RATIO * min(values))
    return {
        "lists": lists,
        "uniform_share": ratio(uniform, lists) or 0.0,
        "threshold": UNIFORM_SHARE_FAIL,
    }


def _version_order(conn: Connection) -> dict[str, tuple[float, int, str]]:
    m = schema.models.c
    order = {
        version: version_key(version, created)
        for version, created in conn.execute(select(m.version, m.created_at))
    }
    order[""] = (-math.inf, 0, "")
    return order


def _experiment_comparison(
    rows: Sequence[Any], order: dict[str, tuple[float, int, str]]
) -> dict[str, Any] | None:
    """Newest vs oldest version among the arms of the latest experiment that served several."""
    arms: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    last_day: dict[str, int] = {}
    for version, experiment, _arm, n, k, last in rows:
        if experiment:
            arms[experiment][version][0] += int(n)
            arms[experiment][version][1] += int(k)
            last_day[experiment] = max(last_day.get(experiment, 0), int(last))
    candidates = [x for x in arms if len(arms[x]) >= 2]
    if not candidates:
        return None
    experiment = max(candidates, key=lambda x: last_day[x])
    ranked = sorted(arms[experiment], key=lambda v: order.get(v, (-1.0, 0, v)))
    return {
        "method": "experiment arms serving different versions",
        "experiment_id": experiment,
        "older": [ranked[0] or None],
        "newer": [ranked[-1] or None],
        **two_proportions(arms[experiment][ranked[0]], arms[experiment][ranked[-1]]),
    }


def two_proportions(older: list[int], newer: list[int], z: float = Z_95) -> dict[str, Any]:
    """CTR difference newer − older with a normal interval (95% by default), also relative to
    older."""
    (n1, k1), (n2, k2) = older, newer
    p1 = k1 / n1 if n1 else 0.0
    p2 = k2 / n2 if n2 else 0.0
    se = math.sqrt(p1 * (1 - p1) / max(n1, 1) + p2 * (1 - p2) / max(n2, 1))
    diff = p2 - p1
    return {
        "impressions_older": n1,
        "impressions_newer": n2,
        "ctr_older": round(p1, 5),
        "ctr_newer": round(p2, 5),
        "diff": round(diff, 5),
        "diff_low": round(diff - z * se, 5),
        "diff_high": round(diff + z * se, 5),
        # Relative to the older CTR; with an older CTR of 0 any click is an unbounded lift.
        "relative_lift": round(diff / p1, 4) if p1 > 0 else None,
        "relative_lift_high": round((diff + z * se) / p1, 4) if p1 > 0 else None,
    }


# 4 ---------------------------------------------------------------------------------------------


def _usage(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
    s, d = T.served.c, T.days.c
    quality = {
        int(day): int(k) / int(n)
        for day, n, k in conn.execute(
            select(s.day, func.sum(s.impressions), func.sum(s.engaged))
            .where(s.day >= low, s.day <= high)
            .group_by(s.day)
        )
        if int(n) >= MIN_DAILY_IMPRESSIONS
    }
    activity = {
        int(day): (int(dau), int(kept))
        for day, dau, kept in conn.execute(
            select(d.day, d.dau, d.retained_next).where(d.day >= low, d.day <= high)
        )
    }
    paired = [day for day in sorted(quality) if day + 1 in activity and activity[day][0] > 0]
    q = np.array([quality[day] for day in paired])
    next_dau = np.array([activity[day + 1][0] for day in paired], dtype=float)
    returning = np.array([activity[day][1] / activity[day][0] for day in paired])
    dau = [activity[day][0] for day in sorted(activity)]
    week = min(7, len(dau) // 2)
    growth = ratio(sum(dau[-week:]) - sum(dau[:week]), sum(dau[:week])) if week else None
    evidence: dict[str, Any] = {
        "paired_days": len(paired),
        "dau_growth": growth,
        "thresholds": {
            "return_lift": RETURN_LIFT,
            "min_user_days": MIN_IMPRESSIONS,
            "correlation_pass": CORRELATION_PASS,
            "correlation_fail": CORRELATION_FAIL,
            "min_paired_days": MIN_PAIRED_DAYS,
        },
    }
    if len(paired) >= 3:
        variation = float((np.percentile(q, 90) - np.percentile(q, 10)) / max(q.mean(), 1e-12))
        evidence["ctr_variation"] = round(variation, 4)
        # Day-level context only: a shared trend (users using up their best items while DAU
        # grows) can make these correlations negative whatever the loop does.
        evidence["response_to_ctr"] = {
            "next_day_dau": _spearman(q, next_dau),
            "return_rate": _spearman(q, returning),
        }
    elastic = _user_response(conn, settings, max(low, high - RESPONSE_DAYS + 1), high)
    evidence["user_response"] = elastic
    smallest = min(elastic["user_days_poorly_served"], elastic["user_days_well_served"])
    enough_users = smallest >= MIN_IMPRESSIONS
    lift, lift_high = elastic["relative_lift"], elastic["relative_lift_high"]
    users_respond = enough_users and elastic["diff_low"] > 0 and (lift or 0.0) >= RETURN_LIFT
    users_flat = enough_users and (
        elastic["diff"] <= 0 or (lift_high is not None and lift_high < RETURN_LIFT)
    )
    # Aggregate response: days of higher CTR followed by more active users.
    dau_response = (evidence.get("response_to_ctr") or {}).get("next_day_dau")
    enough_days = len(paired) >= MIN_PAIRED_DAYS and dau_response is not None
    rho = float(dau_response["rho"]) if enough_days and dau_response else 0.0
    p_value = float(dau_response["p_value"]) if enough_days and dau_response else 1.0
    days_respond = rho >= CORRELATION_PASS and p_value < ALPHA
    days_flat = rho < CORRELATION_FAIL
    confidence = max(
        math.sqrt(smallest / (10 * MIN_IMPRESSIONS)), math.sqrt(len(paired) / 60) * days_respond
    )
    if users_respond or days_respond:
        return Condition(
            4,
            "pass",
            evidence,
            confidence,
            "Users come back more after well-served days; confirm causally with an experiment "
            "on retention.",
        )
    if users_flat and days_flat:
        return Condition(
            4,
            "fail",
            evidence,
            confidence,
            "Better recommendations do not bring users back: improve what the model optimises "
            "(long-term value, diversity, freshness) rather than clicks alone.",
        )
    if not enough_users:
        return Condition(
            4,
            "warn",
            evidence,
            confidence,
            f"Need {MIN_IMPRESSIONS} user-days on each side (well served or not) to see whether "
            "users come back more after good recommendations; keep serving.",
        )
    return Condition(
        4,
        "warn",
        evidence,
        confidence,
        "Engagement's response to model quality is weak: test it with an experiment.",
    )


def _user_response(conn: Connection, settings: Settings, low: int, high: int) -> dict[str, Any]:
    """Next-day return rate of user-days whose served lists were mostly engaged with (at least
    half, with events of positive weight other than corrections, which say a list missed)
    against user-days whose lists mostly were not."""
    i, e, u = schema.impressions.c, schema.events.c, T.user_days.c
    positive = [
        name
        for name, signal in settings.signals.items()
        if signal.weight > 0 and name != "correction"
    ]
    served = conn.execute(
        select(i.user_idx, i.ts, i.recommendation_id).where(
            i.ts >= low * DAY, i.ts < (high + 1) * DAY, i.user_idx.is_not(None)
        )
    ).all()
    engaged = {
        rid
        for (rid,) in conn.execute(
            select(e.recommendation_id)
            .select_from(
                schema.impressions.join(schema.events, e.recommendation_id == i.recommendation_id)
            )
            .where(i.ts >= low * DAY, i.ts < (high + 1) * DAY, e.type.in_(positive))
            .distinct()
        )
    }
    lists: dict[tuple[int, int], list[int]] = defaultdict(lambda: [0, 0])
    for user, ts, rid in served:
        counts = lists[(int(user), int(ts // DAY))]
        counts[0] += 1
        counts[1] += rid in engaged
    active = {
        (int(user), int(d))
        for user, d in conn.execute(select(u.user_idx, u.day).where(u.day > low, u.day <= high + 1))
    }
    groups = [[0, 0], [0, 0]]  # [user-days, returned next day]: poorly / well served
    for (user, d), (n, k) in lists.items():
        if d >= high:
            continue  # the next day is not in the data yet
        group = groups[int(2 * k >= n)]
        group[0] += 1
        group[1] += (user, d + 1) in active
    names = {
        "impressions_older": "user_days_poorly_served",
        "impressions_newer": "user_days_well_served",
        "ctr_older": "return_rate_poorly_served",
        "ctr_newer": "return_rate_well_served",
    }
    test = two_proportions(groups[0], groups[1])
    return {
        "method": "next-day return of well-served vs poorly served user-days",
        "from": iso(low),
        "to": iso(high),
        **{names.get(k, k): v for k, v in test.items()},
    }


def _spearman(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Rank correlation with a one-sided p-value for a positive response."""
    if np.ptp(y) == 0 or np.ptp(x) == 0:
        return {"rho": 0.0, "p_value": 1.0}
    result = stats.spearmanr(x, y, alternative="greater")
    return {"rho": round(float(result.statistic), 4), "p_value": round(float(result.pvalue), 5)}
