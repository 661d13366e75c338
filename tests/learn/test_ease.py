"""EASE pruned to the top weights per item: close to exact EASE, sparse, saved without loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from dataflywheel.errors import ValidationError
from dataflywheel.learn.models import EASE, load_model
from dataflywheel.learn.models.base import _dense_top_k, top_k

N_USERS, N_ITEMS, N_TASTES = 300, 60, 4


def tastes(seed: int = 3) -> sp.csr_matrix:
    """Users drawn from a few overlapping tastes, plus a never-consumed last item."""
    rng = np.random.default_rng(seed)
    affinity = rng.random((N_TASTES, N_ITEMS - 1)) ** 3
    taste = rng.integers(N_TASTES, size=N_USERS)
    chosen = rng.random((N_USERS, N_ITEMS - 1)) < 0.4 * affinity[taste]
    users, items = np.nonzero(chosen)
    data = rng.uniform(0.5, 2.0, size=len(users)).astype(np.float32)
    return sp.csr_matrix((data, (users, items)), shape=(N_USERS, N_ITEMS))


def test_keep_everything_matches_exact() -> None:
    matrix = tastes()
    exact = EASE(l2=10.0).fit(matrix)
    pruned = EASE(l2=10.0, keep=N_ITEMS).fit(matrix)
    np.testing.assert_allclose(
        pruned.score(matrix, np.arange(N_ITEMS)),
        exact.score(matrix, np.arange(N_ITEMS)),
        rtol=1e-4,
        atol=1e-5,
    )


def test_pruned_rankings_close_to_exact() -> None:
    matrix = tastes()
    exact_ids, _ = EASE(l2=10.0).fit(matrix).recommend(matrix, 5)
    pruned = EASE(l2=10.0, keep=N_ITEMS // 2).fit(matrix)
    ids, _ = pruned.recommend(matrix, 5)
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ids, exact_ids, strict=True)])
    assert overlap >= 0.85
    assert pruned._sparse.getnnz(axis=1).max() <= N_ITEMS // 2


def test_unseen_item_ranks_last() -> None:
    matrix = tastes()
    empty = sp.csr_matrix((5, N_ITEMS), dtype=np.float32)
    ids, scores = EASE(l2=10.0, keep=10).fit(matrix).recommend(matrix[:5], N_ITEMS, exclude=empty)
    assert (ids[:, -1] == N_ITEMS - 1).all()
    assert np.isfinite(scores).all()


def test_save_load_round_trip(tmp_path: Path) -> None:
    matrix = tastes()
    model = EASE(l2=10.0, fit_binary=True, keep=12).fit(matrix)
    model.save(tmp_path)
    loaded = load_model(tmp_path)
    assert isinstance(loaded, EASE) and loaded.params() == model.params()
    np.testing.assert_array_equal(
        loaded.score(matrix, np.arange(N_ITEMS)), model.score(matrix, np.arange(N_ITEMS))
    )


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValidationError):
        EASE(keep=0)


@pytest.mark.parametrize("kind", ["noise", "ties", "masked"])
def test_top_k_matches_full_partition(kind: str) -> None:
    rng = np.random.default_rng(5)
    scores = rng.standard_normal((64, 3000)).astype(np.float32)
    if kind == "ties":
        scores = np.round(scores)
    if kind == "masked":
        scores[rng.random(scores.shape) < 0.95] = -np.inf
        scores[0] = -np.inf
    ids, values = top_k(scores, 10)
    _, expected = _dense_top_k(scores, 10)
    np.testing.assert_array_equal(values, expected)
    valid = ids >= 0
    np.testing.assert_array_equal(np.take_along_axis(scores, ids.clip(0), 1)[valid], values[valid])
    assert all(len(set(row[row >= 0])) == (row >= 0).sum() for row in ids)
