"""Bayesian Personalised Ranking (Rendle et al. 2009) trained by the ``implicit`` library."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from implicit.cpu.bpr import BayesianPersonalizedRanking

from dataflywheel.learn.models._factors import cosine_to
from dataflywheel.learn.models.base import Recommender

__all__ = ["BPR"]


class BPR(Recommender):
    """Pairwise-ranking factorisation; trained on one thread so a seed fixes the result.

    Users are folded in as the weighted mean of their items' factors (the BPR item bias is kept),
    which follows a user's newest events without retraining.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 64,
        learning_rate: float = 0.05,
        regularization: float = 0.01,
        iterations: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__(
            factors=int(factors),
            learning_rate=float(learning_rate),
            regularization=float(regularization),
            iterations=int(iterations),
            seed=int(seed),
        )
        self._item_factors = np.zeros((0, 0), dtype=np.float32)

    def _fit(self, matrix: sp.csr_matrix) -> None:
        p = self._params
        model = BayesianPersonalizedRanking(
            factors=p["factors"],
            learning_rate=p["learning_rate"],
            regularization=p["regularization"],
            iterations=p["iterations"],
            random_state=p["seed"],
            num_threads=1,
        )
        model.fit(matrix, show_progress=False)
        self._item_factors = np.asarray(model.item_factors, dtype=np.float32)

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        factors, bias = self._item_factors[:, :-1], self._item_factors[:, -1]
        totals = np.maximum(np.asarray(rows.sum(axis=1)), 1e-12)
        users = np.asarray(rows @ factors) / totals
        return np.asarray(users @ factors.T + bias)

    def _item_similarity(self, item_id: int) -> np.ndarray:
        return cosine_to(self._item_factors, item_id)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"item_factors": self._item_factors}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._item_factors = arrays["item_factors"].astype(np.float32)
