"""EASE: a closed-form linear item-item model, strong on dense catalogues (Steck 2019)."""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from dataflywheel.errors import TrainingError
from dataflywheel.learn.models.base import Recommender

__all__ = ["EASE"]

UNSEEN = np.finfo(np.float32).min
DENSE_ROW_DENSITY = 0.005
"""Above this share of nonzeros, a dense BLAS product beats scipy's sparse-dense product."""


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


class EASE(Recommender):
    """Item-item weights ``B = I - P / diag(P)`` with ``P = (XᵀX + λI)⁻¹``, zero diagonal.

    Only items with training interactions get weights; the others rank last (finite score).
    ``fit_binary`` learns B from which items co-occur, ignoring weights, while recommendations
    still weight the user's row (e.g. by recency), which works best on temporal splits.
    """

    name = "ease"

    def __init__(self, l2: float = 200.0, fit_binary: bool = False) -> None:
        super().__init__(l2=float(l2), fit_binary=bool(fit_binary))
        self._active = np.zeros(0, dtype=np.int64)
        self._weights = np.zeros((0, 0), dtype=np.float32)

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
        self._weights = weights

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        scores = np.full((rows.shape[0], self.n_items), UNSEEN, dtype=np.float32)
        sub = rows[:, self._active]
        if sub.nnz > DENSE_ROW_DENSITY * sub.shape[0] * sub.shape[1]:
            scores[:, self._active] = sub.toarray() @ self._weights
        else:
            scores[:, self._active] = sub @ self._weights
        return scores

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"active": self._active, "weights": self._weights}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._active = arrays["active"].astype(np.int64)
        self._weights = arrays["weights"].astype(np.float32)
