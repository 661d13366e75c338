"""Temporal splits: per-user last fraction and global time cut, deterministic ties."""

from __future__ import annotations

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.splits import global_time_cut, per_user_temporal


def test_each_user_last_fraction_goes_to_test() -> None:
    users = np.array([0] * 10 + [1] * 3)
    times = np.array([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 5, 6, 7], dtype=float)
    train, test = per_user_temporal(users, np.arange(13), times, fraction=0.2, min_interactions=5)
    assert (train == ~test).all()
    np.testing.assert_array_equal(np.flatnonzero(test), [0, 1])
    assert train[10:].all()


def test_ties_broken_by_input_order() -> None:
    users = np.zeros(5, dtype=int)
    times = np.zeros(5)
    _, test = per_user_temporal(users, np.arange(5), times, fraction=0.4, min_interactions=1)
    np.testing.assert_array_equal(np.flatnonzero(test), [3, 4])


def test_small_user_keeps_at_least_one_test_event() -> None:
    _, test = per_user_temporal(np.zeros(5), np.arange(5), np.arange(5.0), fraction=0.1)
    np.testing.assert_array_equal(np.flatnonzero(test), [4])


def test_global_time_cut() -> None:
    times = np.array([5.0, 1.0, 3.0, 3.0, 9.0])
    train, test = global_time_cut(times, 0.4)
    np.testing.assert_array_equal(np.flatnonzero(test), [0, 4])
    assert (train == ~test).all()


def test_bad_fraction_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        global_time_cut(np.arange(3.0), 1.0)
    assert info.value.field == "fraction"
    with pytest.raises(ValidationError):
        per_user_temporal(np.zeros(2), np.zeros(2), np.zeros(2), fraction=0.0)
