"""RP3beta: three-step random walk item graph with popularity penalty (Paudel et al. 2017)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dataflywheel.learn.models._item_item import dense_scores
from dataflywheel.learn.models._neighbours import top_neighbours
from dataflywheel.learn.models.base import Recommender, arrays_to_sparse, sparse_to_arrays

__all__ = ["RP3Beta"]


def _row_normalise(matrix: sp.csr_matrix, power: float) -> sp.csr_matrix:
    sums = np.asarray(matrix.sum(axis=1)).ravel()
    scaled = sp.diags(1.0 / np.maximum(sums, 1e-12)) @ matrix
    result = sp.csr_matrix(scaled, dtype=np.float64)
    result.data **= power
    return result


class RP3Beta(Recommender):
    """Item graph ``W = (P_iu P_ui)`` with transition probabilities raised to ``alpha`` and
    divided by ``popularity ** beta``, so it surfaces less obvious items than plain kNN."""

    name = "rp3beta"

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, neighbours: int = 100) -> None:
        super().__init__(alpha=float(alpha), beta=float(beta), neighbours=int(neighbours))
        self._graph = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        alpha = self._params["alpha"]
        user_to_item = _row_normalise(matrix, alpha)
        item_to_user = _row_normalise(matrix.T.tocsr(), alpha)
        popularity = np.asarray((matrix > 0).sum(axis=0), dtype=np.float64).ravel()
        penalty = np.maximum(popularity, 1.0) ** -self._params["beta"]

        def penalise(block: np.ndarray, ids: np.ndarray) -> np.ndarray:
            result: np.ndarray = block * penalty[None, :]
            return result

        self._graph = top_neighbours(
            item_to_user, user_to_item, self._params["neighbours"], penalise
        )

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        return dense_scores(rows, self._graph)

    def _item_item(self) -> tuple[sp.csr_matrix, np.ndarray | None] | None:
        return self._graph, None

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("graph", self._graph)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._graph = arrays_to_sparse("graph", arrays)
