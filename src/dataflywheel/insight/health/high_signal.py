"""Condition 1, high-signal data is collected: the strong-signal share of feedback, and its trend.

Feedback is every event of a type with a non-zero signal weight; strong signals are the types the
settings mark ``strong`` (likes, ratings, corrections, purchases). The window is split at its
middle day so that a share that was healthy but is collapsing shows up as a warning.
"""

from __future__ import annotations

import math
from collections import defaultdict

from sqlalchemy import Connection, select

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.health.common import Condition
from dataflywheel.insight.quality import ratio
from dataflywheel.insight.rollups import strong_types

STRONG_SHARE_PASS = 0.02
"""Pass at or above 2% of feedback events being strong signals (with a steady trend)."""
STRONG_SHARE_FAIL = 0.005
"""Fail below 0.5%, or with no strong signal at all: clicks alone cannot carry the loop."""
STRONG_TREND_FLOOR = 0.5
"""Warn when the recent half's strong share falls below half of the earlier half's."""


def condition(conn: Connection, settings: Settings, low: int, high: int) -> Condition:
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
