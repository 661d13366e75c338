"""Scoring with a sparse item-item matrix (pruned EASE, item-kNN, RP3beta), compiled.

A user's scores are ``row @ S``: each consumed item adds its row of ``S`` into a dense
accumulator. scipy computes the product as a sparse matrix in two passes (count, then fill) and
the caller densifies it and ranks it in further passes; here each user's scores are accumulated
once, in cache, and the top k taken from the same buffer — 3-4x faster for a batch, 10x for one
user (``benchmarks/bench_quality_movielens.py`` prints both). The kernels release the GIL, so a
large batch is split over the cores.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import scipy.sparse as sp

PARALLEL_ROWS = 256
"""Batches of at least this many users are split across threads, one slice per core."""
_THREADS = max(1, os.cpu_count() or 1)
_pool: ThreadPoolExecutor | None = None


@numba.njit(nogil=True, cache=True)
def _add_rows(
    acc: np.ndarray,
    items: np.ndarray,
    weights: np.ndarray,
    s_indptr: np.ndarray,
    s_indices: np.ndarray,
    s_data: np.ndarray,
) -> None:  # pragma: no cover - compiled; covered through the models' tests
    """``acc += Σ weights[p] * S[items[p]]``: one user's scores, scattered into ``acc``."""
    for p in range(items.size):
        weight = weights[p]
        for q in range(s_indptr[items[p]], s_indptr[items[p] + 1]):
            acc[s_indices[q]] += weight * s_data[q]


@numba.njit(nogil=True, cache=True)
def _accumulate(
    x_indptr: np.ndarray,
    x_indices: np.ndarray,
    x_data: np.ndarray,
    s_indptr: np.ndarray,
    s_indices: np.ndarray,
    s_data: np.ndarray,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled; covered through the models' tests
    for u in range(x_indptr.size - 1):
        lo, hi = x_indptr[u], x_indptr[u + 1]
        _add_rows(out[u], x_indices[lo:hi], x_data[lo:hi], s_indptr, s_indices, s_data)


@numba.njit(nogil=True, cache=True)
def _top_k(
    x_indptr: np.ndarray,
    x_indices: np.ndarray,
    x_data: np.ndarray,
    s_indptr: np.ndarray,
    s_indices: np.ndarray,
    s_data: np.ndarray,
    base: np.ndarray,
    e_indptr: np.ndarray,
    e_indices: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
) -> None:  # pragma: no cover - compiled; covered through the models' tests
    k = ids.shape[1]
    acc = np.empty(base.size, dtype=np.float32)
    for u in range(x_indptr.size - 1):
        acc[:] = base
        lo, hi = x_indptr[u], x_indptr[u + 1]
        _add_rows(acc, x_indices[lo:hi], x_data[lo:hi], s_indptr, s_indices, s_data)
        for p in range(e_indptr[u], e_indptr[u + 1]):
            acc[e_indices[p]] = -np.inf
        best = scores[u]
        best_ids = ids[u]
        best[:] = -np.inf
        best_ids[:] = -1
        for j in range(acc.size):
            value = acc[j]
            if value > best[k - 1]:
                # Insertion into the sorted top k; equal scores keep the lower item id first.
                pos = k - 1
                while pos > 0 and best[pos - 1] < value:
                    best[pos] = best[pos - 1]
                    best_ids[pos] = best_ids[pos - 1]
                    pos -= 1
                best[pos] = value
                best_ids[pos] = j


Csr = tuple[np.ndarray, np.ndarray, np.ndarray]


def _csr(matrix: sp.csr_matrix) -> Csr:
    return (
        matrix.indptr.astype(np.int64, copy=False),
        matrix.indices.astype(np.int32, copy=False),
        matrix.data.astype(np.float32, copy=False),
    )


def _rows(matrix: Csr, lo: int, hi: int) -> Csr:
    """Rows ``lo:hi`` of a CSR triple, rebased so that the slice's indptr starts at 0."""
    indptr, indices, data = matrix
    start, stop = indptr[lo], indptr[hi]
    return indptr[lo : hi + 1] - start, indices[start:stop], data[start:stop]


def _split(n_rows: int, work: Callable[[int, int], None]) -> None:
    """``work(lo, hi)`` over slices of the rows: one per core for large batches."""
    global _pool
    if n_rows < PARALLEL_ROWS or _THREADS == 1:
        work(0, n_rows)
        return
    bounds = np.linspace(0, n_rows, _THREADS + 1).astype(np.int64).tolist()
    if _pool is None:
        _pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="item-item")
    for future in [_pool.submit(work, lo, hi) for lo, hi in itertools.pairwise(bounds)]:
        future.result()


def dense_scores(rows: sp.csr_matrix, similarity: sp.csr_matrix) -> np.ndarray:
    """``rows @ similarity`` as a dense float32 array."""
    out = np.zeros((rows.shape[0], similarity.shape[1]), dtype=np.float32)
    x, s = _csr(rows), _csr(similarity)
    _split(rows.shape[0], lambda lo, hi: _accumulate(*_rows(x, lo, hi), *s, out[lo:hi]))
    return out


def top_k_scores(
    rows: sp.csr_matrix,
    similarity: sp.csr_matrix,
    base: np.ndarray,
    excluded: sp.csr_matrix,
    k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` items per row of ``base + rows @ similarity``, best first, never one of the
    row's ``excluded`` nonzeros; ``-inf`` in ``base`` bars an item. Pads with -1 / -inf."""
    n_rows = rows.shape[0]
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    x, s, e = _csr(rows), _csr(similarity), _csr(excluded)
    base = base.astype(np.float32, copy=False)

    def work(lo: int, hi: int) -> None:
        _top_k(*_rows(x, lo, hi), *s, base, *_rows(e, lo, hi)[:2], ids[lo:hi], scores[lo:hi])

    _split(n_rows, work)
    return ids, scores
