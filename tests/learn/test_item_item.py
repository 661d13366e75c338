"""The compiled item-item kernels agree with scipy's product and a plain ranking."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.learn.models._item_item import PARALLEL_ROWS, dense_scores, top_k_scores


def _random(rng: np.random.Generator, shape: tuple[int, int], density: float) -> sp.csr_matrix:
    matrix = sp.random(shape[0], shape[1], density=density, format="csr", random_state=rng)
    return matrix.astype(np.float32)


def _reference(
    rows: sp.csr_matrix,
    similarity: sp.csr_matrix,
    base: np.ndarray,
    excluded: sp.csr_matrix,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Best first, lower item id first among equal scores, -1 / -inf padding."""
    scores = (rows @ similarity).toarray().astype(np.float32) + base
    scores[excluded.toarray() != 0] = -np.inf
    ids = np.full((rows.shape[0], k), -1, dtype=np.int64)
    best = np.full((rows.shape[0], k), -np.inf, dtype=np.float32)
    for u, row in enumerate(scores):
        order = np.argsort(-row, kind="stable")[:k]
        order = order[np.isfinite(row[order])]
        ids[u, : order.size], best[u, : order.size] = order, row[order]
    return ids, best


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_users=st.integers(1, 40),
    n_items=st.integers(1, 60),
    k=st.integers(1, 70),
    density=st.floats(0.0, 0.5),
    barred=st.floats(0.0, 1.0),
)
def test_top_k_matches_a_full_ranking(
    seed: int, n_users: int, n_items: int, k: int, density: float, barred: float
) -> None:
    rng = np.random.default_rng(seed)
    rows = _random(rng, (n_users, n_items), density)
    # Rounded weights make equal scores common, so the tie order is checked too.
    similarity = _random(rng, (n_items, n_items), density)
    similarity.data = np.round(similarity.data * 4) / 4
    base = np.where(rng.random(n_items) < barred * 0.3, -np.inf, 0.0).astype(np.float32)
    excluded = _random(rng, (n_users, n_items), density / 2)

    ids, scores = top_k_scores(rows, similarity, base, excluded, k)
    want_ids, want_scores = _reference(rows, similarity, base, excluded, k)

    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-6)


def test_large_batches_split_across_threads_give_the_same_answer() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items = PARALLEL_ROWS * 3 + 17, 500
    rows, similarity = _random(rng, (n_users, n_items), 0.05), _random(rng, (n_items, n_items), 0.1)
    base = np.zeros(n_items, dtype=np.float32)

    np.testing.assert_allclose(
        dense_scores(rows, similarity), (rows @ similarity).toarray(), rtol=1e-5, atol=1e-6
    )
    ids, _ = top_k_scores(rows, similarity, base, rows, 10)
    np.testing.assert_array_equal(ids, _reference(rows, similarity, base, rows, 10)[0])
    # A consumed item (a nonzero of the excluding rows) is never recommended.
    assert not any(set(ids[u]) & set(rows[u].indices) for u in range(n_users))


def test_dense_scores_of_rows_without_interactions_are_zero() -> None:
    similarity = _random(np.random.default_rng(1), (30, 30), 0.3)
    empty = sp.csr_matrix((4, 30), dtype=np.float32)
    assert not dense_scores(empty, similarity).any()
