"""Temporal train/test splits of an event log, returned as boolean masks over the events.

Ties in time are broken by the events' position in the input, so the same input always gives the
same split.
"""

from __future__ import annotations

import numpy as np

from dataflywheel.errors import ValidationError

__all__ = ["global_time_cut", "per_user_temporal"]


def _check_fraction(fraction: float) -> None:
    if not 0.0 < fraction < 1.0:
        raise ValidationError("fraction must be strictly between 0 and 1", field="fraction")


def per_user_temporal(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    timestamp: np.ndarray,
    fraction: float = 0.2,
    min_interactions: int = 5,
) -> tuple[np.ndarray, np.ndarray]:
    """Split each user's last ``fraction`` of events (by time) into test; returns (train, test).

    A user with ``n >= min_interactions`` events gives ``max(1, floor(fraction * n))`` events to
    test; users with fewer events stay entirely in train.
    """
    _check_fraction(fraction)
    if min_interactions < 1:
        raise ValidationError("min_interactions must be at least 1", field="min_interactions")
    users = np.asarray(user_idx)
    times = np.asarray(timestamp)
    if not (len(users) == len(np.asarray(item_idx)) == len(times)):
        raise ValidationError("user_idx, item_idx and timestamp differ in length", field="user_idx")
    n = len(users)
    order = np.lexsort((np.arange(n), times, users))
    sorted_users = users[order]
    starts: np.ndarray = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]][:n])
    counts = np.diff(np.r_[starts, n]).astype(np.int64)
    n_test = np.where(
        counts >= min_interactions,
        np.maximum(1, np.floor(fraction * counts).astype(np.int64)),
        0,
    )
    rank_from_end = np.repeat(starts + counts, counts) - np.arange(n) - 1
    test_sorted = rank_from_end < np.repeat(n_test, counts)
    test = np.zeros(n, dtype=bool)
    test[order] = test_sorted
    return ~test, test


def global_time_cut(timestamp: np.ndarray, fraction: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
    """Put the latest ``fraction`` of all events (by time) into test; returns (train, test)."""
    _check_fraction(fraction)
    times = np.asarray(timestamp)
    n = len(times)
    order = np.argsort(times, kind="stable")
    n_test = int(np.floor(fraction * n))
    test = np.zeros(n, dtype=bool)
    test[order[n - n_test :]] = True
    return ~test, test
