"""What every flywheel condition shares: its result type and the two-proportion comparison."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["pass", "warn", "fail"]

Z_95 = 1.96
"""Normal quantile of a two-sided 95% interval (the default of :func:`two_proportions`)."""
ALPHA = 0.05
"""Significance level of the tests that decide a pass (condition 3's Bonferroni-widened block
comparisons, condition 4's day-level correlation)."""

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


def two_proportions(
    older: Sequence[float], newer: Sequence[float], z: float = Z_95
) -> dict[str, Any]:
    """CTR difference newer − older with a normal interval (95% by default), also relative to
    older. Each side is (count, successes); an effective count may carry fractional successes."""
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
