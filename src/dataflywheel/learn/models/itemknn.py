"""Item-item cosine neighbourhood model: a fast, explainable baseline."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dataflywheel.learn.models._item_item import dense_scores
from dataflywheel.learn.models._neighbours import top_neighbours
from dataflywheel.learn.models.base import Recommender, arrays_to_sparse, sparse_to_arrays

__all__ = ["ItemKNN"]


class ItemKNN(Recommender):
    """Scores ``row @ S`` where S keeps each item's ``neighbours`` most cosine-similar items.

    ``shrink`` damps similarities resting on few co-occurrences.
    """

    name = "itemknn"

    def __init__(self, neighbours: int = 100, shrink: float = 10.0) -> None:
        super().__init__(neighbours=int(neighbours), shrink=float(shrink))
        self._similarity = sp.csr_matrix((0, 0), dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        item_users = matrix.T.tocsr()
        norms = np.sqrt(np.asarray(item_users.multiply(item_users).sum(axis=1))).ravel()
        shrink = self._params["shrink"]

        def cosine(block: np.ndarray, ids: np.ndarray) -> np.ndarray:
            result: np.ndarray = block / (norms[ids, None] * norms[None, :] + shrink + 1e-12)
            return result

        self._similarity = top_neighbours(item_users, matrix, self._params["neighbours"], cosine)

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        return dense_scores(rows, self._similarity)

    def _item_item(self) -> tuple[sp.csr_matrix, np.ndarray | None] | None:
        return self._similarity, None

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("similarity", self._similarity)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._similarity = arrays_to_sparse("similarity", arrays)
