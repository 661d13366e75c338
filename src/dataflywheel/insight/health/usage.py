"""Condition 4, better models drive more usage: users come back more after being served well.

The main test follows users: the next-day return rate of user-days whose lists were mostly
engaged with, against user-days whose lists mostly were not. A day-level response (days of
higher click-through followed by more active users) can also pass the condition; it is kept as
context because a shared trend can push it either way whatever the loop does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import Connection, func, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import DAY, iso
from dataflywheel.insight.health.common import ALPHA, Condition, two_proportions
from dataflywheel.insight.quality import ratio
from dataflywheel.store import schema

MIN_USER_DAYS = 500
"""User-days needed on each side (well served, poorly served) before the user test decides."""
RETURN_LIFT = 0.1
"""Relative next-day return lift of well-served user-days needed to pass (10%)."""
RESPONSE_DAYS = 28
"""The recent days whose served users are followed to the next day."""
MIN_DAILY_IMPRESSIONS = 50
"""A day enters the day-level response only with this many impressions (its CTR is noise
otherwise)."""
MIN_PAIRED_DAYS = 14
"""Days (CTR of the day, active users of the next) needed before the day-level response counts."""
CORRELATION_PASS = 0.3
"""Spearman correlation of daily CTR with next-day active users that passes (at ``ALPHA``) ..."""
CORRELATION_FAIL = 0.1
"""... and below which, with a flat user test too, the condition fails."""


def condition(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
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
            "min_user_days": MIN_USER_DAYS,
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
    enough_users = smallest >= MIN_USER_DAYS
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
        math.sqrt(smallest / (10 * MIN_USER_DAYS)), math.sqrt(len(paired) / 60) * days_respond
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
            f"Need {MIN_USER_DAYS} user-days on each side (well served or not) to see whether "
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
