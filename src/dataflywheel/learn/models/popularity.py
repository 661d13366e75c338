"""Most-popular baseline; recency comes from the time decay built into the matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dataflywheel.learn.models.base import Recommender

__all__ = ["Popularity"]


class Popularity(Recommender):
    """Scores every item by its (decayed) column sum; the user's row only drives exclusion."""

    name = "popularity"

    def __init__(self) -> None:
        super().__init__()
        self._counts = np.zeros(0, dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._counts = np.asarray(matrix.sum(axis=0), dtype=np.float32).ravel()

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        return np.broadcast_to(self._counts, (rows.shape[0], self._counts.size))

    def _item_similarity(self, item_id: int) -> np.ndarray:
        return self._counts

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"counts": self._counts}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._counts = arrays["counts"].astype(np.float32)
