"""EASE: a closed-form linear item-item model, strong on dense catalogues (Steck 2019)."""

from __future__ import annotations

import math
import time

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from dataflywheel.errors import TrainingError, ValidationError
from dataflywheel.learn.models._item_item import dense_scores
from dataflywheel.learn.models.base import Recommender, arrays_to_sparse, sparse_to_arrays

__all__ = ["EASE"]

UNSEEN = np.finfo(np.float32).min
DENSE_ROW_DENSITY = 0.005
"""Above this share of nonzeros, a dense BLAS product beats scipy's sparse-dense product."""
PRUNE_CHUNK = 1024
"""Rows of the dense weights pruned at a time (bounds the temporary index arrays)."""


def _spd_inverse(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive definite float32 matrix via Cholesky (3x faster than LU)."""
    factor, info = scipy.linalg.lapack.spotrf(matrix, lower=False, overwrite_a=True)
    if info != 0:
        raise TrainingError(f"EASE Gram matrix is not positive definite (info={info})")
    upper, info = scipy.linalg.lapack.spotri(factor, lower=False, overwrite_c=True)
    if info != 0:
        raise TrainingError(f"EASE Gram matrix could not be inverted (info={info})")
    result: np.ndarray = np.triu(upper) + np.triu(upper, 1).T
    return result


_PROBE_ITEMS = 768
_PROBE_RUNS = 5
_flops: list[float] = []


def estimated_fit_seconds(n_items: int) -> float:
    """Seconds a dense EASE fit on ``n_items`` active items should take on this machine: the
    Cholesky inverse grows with the cube of the items (20 000 items ≈ 500 times 2 500), so
    the rate is measured once per process on a small inverse and extrapolated. The fastest of
    ``_PROBE_RUNS`` inverses counts: a single one varied 30-fold on a busy machine (the first
    also pays for starting the BLAS threads), and skipped fits that would have fit the budget."""
    if not _flops:
        rng = np.random.default_rng(0)
        probe = rng.random((_PROBE_ITEMS, _PROBE_ITEMS), dtype=np.float32)
        gram = probe @ probe.T + np.eye(_PROBE_ITEMS, dtype=np.float32) * _PROBE_ITEMS
        fastest = math.inf
        for _ in range(_PROBE_RUNS):
            started = time.perf_counter()
            _spd_inverse(gram)
            fastest = min(fastest, time.perf_counter() - started)
        _flops.append(_PROBE_ITEMS**3 / max(fastest, 1e-6))
    return float(n_items) ** 3 / _flops[0]


def _prune_rows(weights: np.ndarray, columns: np.ndarray, keep: int, n_items: int) -> sp.csr_matrix:
    """Keep the ``keep`` largest-magnitude weights of each row, as CSR over all ``n_items``.

    Row ``r`` of ``weights`` is item ``columns[r]`` and so is column ``c``; the work goes in
    row blocks so the index arrays never reach the size of the dense matrix.
    """
    keep = min(keep, weights.shape[1])
    if keep == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float32)
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    indptr[columns + 1] = keep
    indices: list[np.ndarray] = []
    data: list[np.ndarray] = []
    for start in range(0, weights.shape[0], PRUNE_CHUNK):
        block = weights[start : start + PRUNE_CHUNK]
        best = np.argpartition(-np.abs(block), keep - 1, axis=1)[:, :keep]
        best.sort(axis=1)
        data.append(np.take_along_axis(block, best, axis=1).ravel())
        indices.append(columns[best].ravel())
    return sp.csr_matrix(
        (np.concatenate(data), np.concatenate(indices).astype(np.int32), np.cumsum(indptr)),
        shape=(n_items, n_items),
    )


class EASE(Recommender):
    """Item-item weights ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``, zero diagonal.

    Only items with training interactions get weights; the others rank last (finite score).
    ``fit_binary`` learns B from which items co-occur, ignoring weights, while recommendations
    still weight the user's row (e.g. by recency), which works best on temporal splits.
    ``keep`` prunes each item's row of B to its ``keep`` largest-magnitude weights (sparse):
    scoring then costs ``keep`` per consumed item instead of the whole catalogue; ``None`` keeps
    exact dense EASE.
    """

    name = "ease"

    def __init__(
        self, l2: float = 200.0, fit_binary: bool = False, keep: int | None = None
    ) -> None:
        if keep is not None and int(keep) < 1:
            raise ValidationError("keep must be a positive number of weights", field="keep")
        super().__init__(
            l2=float(l2), fit_binary=bool(fit_binary), keep=None if keep is None else int(keep)
        )
        self._active = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros((0, 0), dtype=np.float32)
        self._sparse = sp.csr_matrix((0, 0), dtype=np.float32)
        self._unseen = np.zeros(0, dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._active = np.flatnonzero(matrix.getnnz(axis=0)).astype(np.int64)
        sub = matrix[:, self._active]
        if self._params["fit_binary"]:
            sub = (sub > 0).astype(np.float32)
        gram = (sub.T @ sub).toarray().astype(np.float32)
        gram[np.diag_indices_from(gram)] += self._params["l2"]
        weights = _spd_inverse(gram)
        weights /= -np.diag(weights)
        np.fill_diagonal(weights, 0.0)
        if self._params["keep"] is None:
            self._weights = weights
        else:
            self._set_sparse(_prune_rows(weights, self._active, self._params["keep"], self.n_items))

    def _set_sparse(self, weights: sp.csr_matrix) -> None:
        self._sparse = weights
        self._unseen = np.full(self.n_items, UNSEEN, dtype=np.float32)
        self._unseen[self._active] = 0.0

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        if self._params["keep"] is not None:
            scores: np.ndarray = dense_scores(rows, self._sparse)
            scores += self._unseen
            return scores
        scores = np.full((rows.shape[0], self.n_items), UNSEEN, dtype=np.float32)
        sub = rows[:, self._active]
        if sub.nnz > DENSE_ROW_DENSITY * sub.shape[0] * sub.shape[1]:
            scores[:, self._active] = sub.toarray() @ self._weights
        else:
            scores[:, self._active] = sub @ self._weights
        return scores

    def _item_item(self) -> tuple[sp.csr_matrix, np.ndarray | None] | None:
        return None if self._params["keep"] is None else (self._sparse, self._unseen)

    def _arrays(self) -> dict[str, np.ndarray]:
        if self._params["keep"] is not None:
            return {"active": self._active, **sparse_to_arrays("weights", self._sparse)}
        return {"active": self._active, "weights": self._weights}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._active = arrays["active"].astype(np.int64)
        if self._params["keep"] is not None:
            self._set_sparse(arrays_to_sparse("weights", arrays).astype(np.float32))
        else:
            self._weights = arrays["weights"].astype(np.float32)
