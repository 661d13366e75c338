"""Turn raw weighted events into the users x items matrix every model trains on.

Negative weights (dislikes, removals) are summed with the positive ones of the same pair and the
result is clipped to [0, MAX_WEIGHT], so a dislike cancels a click and the models always get
non-negative, bounded input.
Recency can enter twice: by age in days (``half_life_days``) and by position in the user's own
history (``recent_half_life`` events), which captures "what the user did lately" even for users
who act in bursts.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from dataflywheel.errors import ValidationError

__all__ = ["MAX_WEIGHT", "SECONDS_PER_DAY", "build_matrix", "decay_weights", "recency_weights"]

SECONDS_PER_DAY = 86_400.0
MAX_WEIGHT = 1e4
"""Cap of an event's weight and of a pair's sum: far above real sums (a like weighs 4), and
low enough that iALS's confidence (1 + alpha × weight, alpha up to 50) stays solvable."""


def decay_weights(
    user_idx: np.ndarray,
    weight: np.ndarray,
    timestamp: np.ndarray,
    *,
    half_life_days: float,
    now: float | None = None,
    reference: Literal["global", "user"] = "global",
) -> np.ndarray:
    """Multiply weights by ``0.5 ** (age / half_life)``; age is measured from ``now`` or, with
    ``reference="user"``, from each user's own last event (recency within the user's history)."""
    if half_life_days <= 0:
        raise ValidationError("half_life_days must be positive", field="half_life_days")
    times = np.asarray(timestamp, dtype=np.float64)
    if reference == "user":
        users = np.asarray(user_idx, dtype=np.int64)
        last = np.full(int(users.max()) + 1 if users.size else 0, -np.inf)
        np.maximum.at(last, users, times)
        ref = last[users]
    elif reference == "global":
        latest = float(times.max()) if times.size else 0.0
        ref = np.full_like(times, latest if now is None else float(now))
    else:
        raise ValidationError("reference must be 'global' or 'user'", field="reference")
    age_days = np.maximum(ref - times, 0.0) / SECONDS_PER_DAY
    return np.asarray(weight, dtype=np.float64) * np.exp2(-age_days / half_life_days)


def recency_weights(
    user_idx: np.ndarray, timestamp: np.ndarray, *, half_life: float, floor: float = 0.0
) -> np.ndarray:
    """Per-event factor ``floor + (1 - floor) * 0.5 ** (r / half_life)``, ``r`` = number of the
    user's events after this one (ties in time broken by input order)."""
    if half_life <= 0:
        raise ValidationError("recent_half_life must be positive", field="recent_half_life")
    if not 0.0 <= floor <= 1.0:
        raise ValidationError("recent_floor must be within [0, 1]", field="recent_floor")
    users = np.asarray(user_idx, dtype=np.int64)
    n = len(users)
    order = np.lexsort((np.arange(n), np.asarray(timestamp), users))
    sorted_users = users[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]][:n])
    counts = np.diff(np.r_[starts, n])
    from_end = np.repeat(starts + counts, counts) - np.arange(n) - 1
    factors = np.empty(n, dtype=np.float64)
    factors[order] = floor + (1.0 - floor) * np.exp2(-from_end / half_life)
    return factors


def build_matrix(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    weight: np.ndarray,
    timestamp: np.ndarray,
    *,
    n_users: int,
    n_items: int,
    half_life_days: float | None = None,
    now: float | None = None,
    reference: Literal["global", "user"] = "global",
    recent_half_life: float | None = None,
    recent_floor: float = 0.0,
) -> sp.csr_matrix:
    """Sum (optionally time-decayed) event weights per (user, item) into a float32 CSR matrix.

    Timestamps are epoch seconds; ``now`` defaults to the latest event. ``recent_half_life`` (in
    events) multiplies by :func:`recency_weights`. Sums that end up <= 0 are dropped (clipped
    to 0) because the models expect non-negative confidences; weights and sums are capped at
    :data:`MAX_WEIGHT` (NaN weights count 0).
    """
    users = np.asarray(user_idx, dtype=np.int64)
    items = np.asarray(item_idx, dtype=np.int64)
    values = np.asarray(weight, dtype=np.float64)
    if not (len(users) == len(items) == len(values) == len(np.asarray(timestamp))):
        raise ValidationError("event arrays differ in length", field="user_idx")
    if users.size and (users.min() < 0 or users.max() >= n_users):
        raise ValidationError("user index out of range", field="user_idx")
    if items.size and (items.min() < 0 or items.max() >= n_items):
        raise ValidationError("item index out of range", field="item_idx")
    if half_life_days is not None:
        values = decay_weights(
            users, values, timestamp, half_life_days=half_life_days, now=now, reference=reference
        )
    if recent_half_life is not None:
        values = values * recency_weights(
            users, timestamp, half_life=recent_half_life, floor=recent_floor
        )
    # Events stored before value bounds existed can carry huge or infinite weights.
    values = np.clip(np.nan_to_num(values, nan=0.0), -MAX_WEIGHT, MAX_WEIGHT)
    matrix = sp.csr_matrix((values, (users, items)), shape=(n_users, n_items), dtype=np.float64)
    matrix.sum_duplicates()
    matrix.data = np.clip(matrix.data, 0.0, MAX_WEIGHT)
    matrix.eliminate_zeros()
    return matrix.astype(np.float32)
