"""Condition 3, the improvement is perceivable: users respond better to newer models online.

Serving must follow the model (logged propensities not near uniform), and then one comparison
decides, in this order: experiment arms that served different versions; the model's own picks
against exploration's picks at the same positions; or, over time, where serving started against
the best later block of versions. Automatic rollbacks by the watch after promotion are reported
beside them: each is a promoted model that users perceived as worse.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import orjson
from scipy import stats
from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import DAY
from dataflywheel.insight.health.common import ALPHA, Condition, two_proportions
from dataflywheel.insight.quality import clicked_slots, ratio, version_key
from dataflywheel.store import schema

PERCEIVABLE_LIFT = 0.05
"""Relative CTR lift that counts as perceivable: the interval's upper end below it fails, the
model-vs-exploration comparison passes only with its lower end above it."""
MIN_IMPRESSIONS = 500
"""Impressions needed on each side of a version comparison (and model-served lists needed
before serving can be judged random)."""
MIN_SLOTS = 200
"""Exploration slots needed before the model-vs-exploration click-through counts."""
MAX_BLOCKS = 4
"""Later versions are pooled into at most this many consecutive blocks (each one comparison)."""
RANDOMNESS_SAMPLE = 2_000
"""Newest model-served lists whose propensities (and clicks) are read."""
UNIFORM_RATIO = 1.5
"""A list is near uniform when its largest propensity is under 1.5 × its smallest ..."""
UNIFORM_MAX = 0.5
"""... and under 0.5: no item was likely to be shown (1.0 is deterministic serving)."""
UNIFORM_SHARE_FAIL = 0.9
"""Share of near-uniform lists at which serving counts as random: the condition fails."""
ROLLBACK_ACTION = "rollback"
"""The audit action of an automatic rollback (``Registry.rollback`` with evidence)."""


def condition(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
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
    evidence["watch_rollbacks"] = _watch_rollbacks(conn)
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
    exploration filled (propensity < 0.5) in the newest ``RANDOMNESS_SAMPLE`` model-served
    lists, at matched positions.

    Exploration need not fill random positions (``aimed_epsilon`` never explores the top three
    and explores more toward the bottom), so the model's slots would carry the top positions'
    higher click-through. The model's click-through is therefore post-stratified: its rate at
    each position, weighted by exploration's share of slots there (positions without slots of
    both kinds drop out), with variance Σ w² p(1 − p) / n; it goes into the comparison as the
    effective count that has this variance. A clear lift means users perceive the model's
    choices as better than the alternative at the same place in the list. Unlike CTR across
    versions it does not drift down as users exhaust their best items.
    """
    i = schema.impressions.c
    lists = conn.execute(
        select(i.recommendation_id, i.item_ids, i.propensities)
        .where(i.model_version.is_not(None), i.ts >= low * DAY, i.ts < (high + 1) * DAY)
        .order_by(i.id.desc())
        .limit(RANDOMNESS_SAMPLE)
    ).all()
    clicked = clicked_slots(conn, settings, [row[0] for row in lists])
    # position -> [exploration slots, their clicks, model slots, their clicks]
    counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for rec, raw_items, raw_props in lists:
        items = orjson.loads(raw_items) if isinstance(raw_items, str | bytes) else raw_items
        props = orjson.loads(raw_props) if isinstance(raw_props, str | bytes) else raw_props
        for position, (item, p) in enumerate(zip(items or (), props or (), strict=False)):
            side = 2 if float(p) >= 0.5 else 0
            counts[position][side] += 1
            counts[position][side + 1] += (rec, str(item)) in clicked
    matched = sorted(j for j, c in counts.items() if c[0] and c[2])
    explored = [sum(counts[j][0] for j in matched), sum(counts[j][1] for j in matched)]
    model_slots = sum(counts[j][2] for j in matched)
    rate = variance = 0.0
    for j in matched:
        n_e, _, n_m, k_m = counts[j]
        weight, p = n_e / explored[0], k_m / n_m
        rate += weight * p
        variance += weight**2 * p * (1 - p) / n_m
    # With every position's rate at 0 or 1 the variance is 0: fall back to the slots themselves.
    effective = max(1, round(rate * (1 - rate) / variance)) if variance > 0 else model_slots
    return {
        "older": "exploration slots",
        "newer": "model slots at exploration's positions (effective count)",
        "model_slots": model_slots,
        "positions": [
            {
                "position": j + 1,
                "exploration_slots": counts[j][0],
                "exploration_ctr": ratio(counts[j][1], counts[j][0]),
                "model_slots": counts[j][2],
                "model_ctr": ratio(counts[j][3], counts[j][2]),
            }
            for j in matched
        ],
        **two_proportions(explored, [effective, rate * effective]),
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


def _watch_rollbacks(conn: Connection) -> dict[str, Any]:
    """Automatic rollbacks by the watch after promotion: their number, and the newest one from
    its ``audit_log`` row (action ``rollback``) and the retired version's ``metrics.watch``,
    both written in the rollback's transaction with the same comparison."""
    a, m = schema.audit_log.c, schema.models.c
    rows = conn.execute(
        select(a.ts, a.subject, a.detail)
        .where(a.action == ROLLBACK_ACTION)
        .order_by(a.ts.desc(), a.id.desc())
    ).all()
    if not rows:
        return {"count": 0, "latest": None}
    ts, version, detail = rows[0]
    detail = _json(detail) or {}
    metrics = _json(
        conn.execute(select(m.metrics).where(m.version == version)).scalar_one_or_none()
    )
    watch = (metrics or {}).get("watch")
    return {
        "count": len(rows),
        "latest": {
            "version": version,
            "restored": detail.get("restored"),
            "at": float(ts),
            "impressions": detail.get("impressions"),
            "previous_impressions": detail.get("previous_impressions"),
            "lift": detail.get("lift"),
            "low": detail.get("low"),
            "high": detail.get("high"),
            "p_value": detail.get("p_value"),
            "reason": detail.get("reason"),
            "on_model": isinstance(watch, dict),
        },
    }


def _json(value: Any) -> dict[str, Any] | None:
    """A JSON column's object (drivers may hand back text)."""
    if isinstance(value, str | bytes):
        value = orjson.loads(value)
    return value if isinstance(value, dict) else None
