"""How good a served list really was, judged against the ground truth the engine never sees."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["served_ndcg"]


def served_ndcg(
    utility: NDArray[np.float64], served: NDArray[np.int64], k: int = 10, relevant: int = 20
) -> float:
    """NDCG@k of ``served`` (item indices, best first) where the relevant items are the user's
    ``relevant`` truly best available ones (``utility`` is -inf for unavailable items)."""
    available = int(np.isfinite(utility).sum())
    n_relevant = min(relevant, available)
    if n_relevant == 0:
        return 0.0
    threshold = -np.partition(-utility, n_relevant - 1)[n_relevant - 1]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    hits = utility[served[:k]] >= threshold
    ideal = discounts[: min(k, n_relevant)].sum()
    return float(discounts[: hits.size][hits].sum() / ideal)
