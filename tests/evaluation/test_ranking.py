"""Ranking metrics: hand-computed values and hypothesis properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.ranking import (
    coverage,
    map_at_k,
    ndcg_at_k,
    novelty,
    ranking_metrics,
    recall_at_k,
)

N_ITEMS = 12


def held(rows: list[list[int]]) -> sp.csr_matrix:
    r = [u for u, items in enumerate(rows) for _ in items]
    c = [i for items in rows for i in items]
    return sp.csr_matrix((np.ones(len(c)), (r, c)), shape=(len(rows), N_ITEMS))


def test_hand_computed_values() -> None:
    recs = np.array([[1, 5, 2, -1]])
    truth = held([[2, 7]])
    assert recall_at_k(recs, truth, 4) == pytest.approx(0.5)
    ideal = 1 + 1 / math.log2(3)
    assert ndcg_at_k(recs, truth, 4) == pytest.approx((1 / math.log2(4)) / ideal)
    assert map_at_k(recs, truth, 4) == pytest.approx((1 / 3) / 2)


def test_users_without_heldout_items_are_skipped() -> None:
    recs = np.array([[1, 2], [3, 4]])
    assert ndcg_at_k(recs, held([[1], []]), 2) == pytest.approx(1.0)


def test_coverage_and_novelty() -> None:
    recs = np.array([[0, 1], [1, -1]])
    assert coverage(recs, 4) == pytest.approx(0.5)
    train = sp.csr_matrix(np.array([[1, 0], [1, 1], [1, 0]], dtype=float))
    expected = np.mean([-math.log2(4 / 4), -math.log2(2 / 4), -math.log2(4 / 4)])
    assert novelty(np.array([[0, 1], [0, -1]]), train) == pytest.approx(expected)


def test_bad_k_rejected() -> None:
    with pytest.raises(ValidationError):
        ndcg_at_k(np.zeros((1, 2), dtype=int), held([[1]]), 0)


relevant_sets = st.lists(
    st.sets(st.integers(0, N_ITEMS - 1), min_size=1, max_size=6), min_size=1, max_size=5
)


@settings(max_examples=60, deadline=None)
@given(relevant_sets, st.integers(1, 8))
def test_metrics_bounded_and_perfect_ranking_scores_one(sets: list[set[int]], k: int) -> None:
    truth = held([sorted(s) for s in sets])
    perm = np.array([np.random.default_rng(len(s)).permutation(N_ITEMS) for s in sets])
    for metric in (recall_at_k, ndcg_at_k, map_at_k):
        assert 0.0 <= metric(perm, truth, k) <= 1.0
    perfect = np.array(
        [sorted(s) + [i for i in range(N_ITEMS) if i not in s] for s in sets], dtype=np.int64
    )
    for metric in (recall_at_k, ndcg_at_k, map_at_k):
        assert metric(perfect, truth, k) == pytest.approx(1.0)


@settings(max_examples=60, deadline=None)
@given(relevant_sets, st.integers(1, 8), st.integers(0, 1000))
def test_invariant_to_order_of_heldout_entries(sets: list[set[int]], k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    recs = np.array([rng.permutation(N_ITEMS)[:k] for _ in sets])
    truth = held([sorted(s) for s in sets])
    shuffled = held([list(rng.permutation(sorted(s))) for s in sets])
    assert ranking_metrics(recs, truth, truth, k) == ranking_metrics(recs, shuffled, truth, k)


@settings(max_examples=40, deadline=None)
@given(relevant_sets, st.integers(2, 8))
def test_moving_a_hit_down_never_raises_ndcg(sets: list[set[int]], k: int) -> None:
    truth = held([sorted(s) for s in sets])
    best = np.array(
        [sorted(s) + [i for i in range(N_ITEMS) if i not in s] for s in sets], dtype=np.int64
    )
    worse = best[:, ::-1].copy()
    assert ndcg_at_k(worse, truth, k) <= ndcg_at_k(best, truth, k) + 1e-12
