"""build_matrix: summing, clipping of negatives, time decay and recency by position."""

from __future__ import annotations

import numpy as np
import pytest

from dataflywheel.errors import ValidationError
from dataflywheel.learn.matrix import SECONDS_PER_DAY, build_matrix, recency_weights

DAY = SECONDS_PER_DAY


def test_duplicates_summed_and_float32() -> None:
    m = build_matrix([0, 0, 1], [2, 2, 0], [1.0, 2.0, 1.0], [0, 1, 2], n_users=2, n_items=3)
    assert m.dtype == np.float32 and m.shape == (2, 3)
    assert m[0, 2] == 3.0 and m[1, 0] == 1.0 and m.nnz == 2


def test_dislike_cancels_click_and_negatives_clip_to_zero() -> None:
    m = build_matrix([0, 0, 1], [1, 1, 1], [1.0, -1.0, -3.0], [0, 1, 2], n_users=2, n_items=2)
    assert m.nnz == 0
    assert (m.toarray() >= 0).all()


def test_half_life_halves_weight_per_half_life() -> None:
    m = build_matrix(
        [0, 0, 0],
        [0, 1, 2],
        [1.0, 1.0, 1.0],
        [10 * DAY, 8 * DAY, 6 * DAY],
        n_users=1,
        n_items=3,
        half_life_days=2.0,
    )
    np.testing.assert_allclose(m.toarray()[0], [1.0, 0.5, 0.25], rtol=1e-6)


def test_explicit_now_and_user_reference() -> None:
    kwargs = {"n_users": 2, "n_items": 1, "half_life_days": 1.0}
    users, times = [0, 1], [0.0, 5 * DAY]
    glob = build_matrix(users, [0, 0], [1.0, 1.0], times, now=6 * DAY, **kwargs)
    np.testing.assert_allclose(glob.toarray().ravel(), [2.0**-6, 0.5], rtol=1e-6)
    per_user = build_matrix(users, [0, 0], [1.0, 1.0], times, reference="user", **kwargs)
    np.testing.assert_allclose(per_user.toarray().ravel(), [1.0, 1.0])


def test_recency_weights_by_position_in_user_history() -> None:
    factors = recency_weights([0, 0, 0, 1], [3.0, 1.0, 2.0, 0.0], half_life=1.0, floor=0.5)
    np.testing.assert_allclose(factors, [1.0, 0.625, 0.75, 1.0])


def test_out_of_range_index_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        build_matrix([0], [5], [1.0], [0.0], n_users=1, n_items=3)
    assert info.value.field == "item_idx"
    with pytest.raises(ValidationError):
        build_matrix([0], [0], [1.0], [0.0], n_users=1, n_items=1, half_life_days=0)
