"""Sample ratio mismatch: do the arms hold the share of units the design promised?

A mismatch means assignment or logging is broken (bots, redirects, crashes in one arm), and then
no metric of the experiment can be trusted. Pearson's chi-square goodness-of-fit test, flagged at
p < 0.001 as GrowthBook and most platforms do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate

SRM_THRESHOLD = 0.001


@dataclass(frozen=True)
class SRMResult:
    """Chi-square test of observed arm counts against expected shares."""

    statistic: float
    df: int
    p_value: float
    mismatch: bool
    observed_shares: tuple[float, ...]
    expected_shares: tuple[float, ...]
    threshold: float = SRM_THRESHOLD

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready mapping of every field."""
        return asdict(self)


def srm(
    observed_counts: ArrayLike,
    expected_shares: Sequence[float],
    threshold: float = SRM_THRESHOLD,
) -> SRMResult:
    """Test arm counts against the intended split (shares summing to 1 or 100)."""
    counts = np.asarray(observed_counts, dtype=np.float64)
    if counts.ndim != 1 or counts.size < 2:
        raise ValidationError(
            "observed_counts needs one count per arm, at least two arms", field="observed_counts"
        )
    if not np.all(np.isfinite(counts)) or np.any(counts < 0) or np.any(counts != np.round(counts)):
        raise ValidationError(
            "observed_counts must be non-negative whole numbers", field="observed_counts"
        )
    expected = _validate.shares(expected_shares, "expected_shares")
    if expected.size != counts.size:
        raise ValidationError(
            f"expected_shares has {expected.size} arms but observed_counts has {counts.size}",
            field="expected_shares",
        )
    threshold = _validate.probability(threshold, "threshold")
    total = float(counts.sum())
    if total == 0:
        raise ValidationError("observed_counts are all zero", field="observed_counts")
    live = expected > 0
    df = int(live.sum()) - 1
    if np.any(counts[~live] > 0):
        statistic, p_value = float("inf"), 0.0  # units in an arm meant to receive none
    else:
        wanted = total * expected[live]
        statistic = float(np.sum((counts[live] - wanted) ** 2 / wanted))
        p_value = float(special.chdtrc(df, statistic)) if df > 0 else 1.0
    return SRMResult(
        statistic=statistic,
        df=df,
        p_value=p_value,
        mismatch=p_value < threshold,
        observed_shares=tuple(float(c) for c in counts / total),
        expected_shares=tuple(float(e) for e in expected),
        threshold=threshold,
    )
