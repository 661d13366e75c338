"""Implicit-feedback ALS (Hu, Koren, Volinsky 2008) trained by the ``implicit`` library."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from dataflywheel.learn.models._factors import cosine_to, thread_count
from dataflywheel.learn.models.base import Recommender

__all__ = ["IALS"]


class IALS(Recommender):
    """Weighted matrix factorisation; users are re-solved from their current row at query time."""

    name = "ials"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.05,
        alpha: float = 2.0,
        iterations: int = 15,
        seed: int = 0,
    ) -> None:
        super().__init__(
            factors=int(factors),
            regularization=float(regularization),
            alpha=float(alpha),
            iterations=int(iterations),
            seed=int(seed),
        )
        self._model = self._new_model()

    def _new_model(self) -> AlternatingLeastSquares:
        p = self._params
        with threadpool_limits(1, "blas"):
            return AlternatingLeastSquares(
                factors=p["factors"],
                regularization=p["regularization"],
                alpha=p["alpha"],
                iterations=p["iterations"],
                random_state=p["seed"],
                num_threads=thread_count(),
            )

    @classmethod
    def from_item_factors(cls, item_factors: np.ndarray, **params: Any) -> IALS:
        """A model whose item factors were fitted elsewhere (Spark MLlib's ALS); users are
        folded in from their rows at query time, as for a model fitted here."""
        model = cls(**{**params, "factors": int(item_factors.shape[1])})
        model._n_items = int(item_factors.shape[0])
        model._restore({"item_factors": item_factors})
        return model

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._model = self._new_model()
        with threadpool_limits(1, "blas"):
            self._model.fit(matrix, show_progress=False)

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        with threadpool_limits(1, "blas"):
            users = self._model.recalculate_user(np.arange(rows.shape[0]), rows)
        return np.asarray(users @ self._model.item_factors.T)

    def _item_similarity(self, item_id: int) -> np.ndarray:
        return cosine_to(self._model.item_factors, item_id)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": np.asarray(self._model.item_factors, dtype=np.float32)}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._model = self._new_model()
        self._model.item_factors = arrays["item_factors"].astype(np.float32)
