"""Top-k ranking metrics computed vectorised from recommended ids and a held-out matrix.

``recommended`` is an ``n_users x k`` int array of item ids (``-1`` = padding) whose row ``u``
belongs to row ``u`` of ``heldout`` (users x items, nonzero = relevant). Accuracy metrics are
averaged over the users that have at least one held-out item; relevance is binary.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from dataflywheel.errors import ValidationError

__all__ = [
    "coverage",
    "hits",
    "map_at_k",
    "ndcg_at_k",
    "novelty",
    "ranking_metrics",
    "recall_at_k",
]


def _prepare(recommended: np.ndarray, heldout: sp.spmatrix, k: int | None) -> np.ndarray:
    recs = np.asarray(recommended)
    if recs.ndim != 2:
        raise ValidationError("recommended must be a 2-D array", field="recommended")
    if recs.shape[0] != heldout.shape[0]:
        raise ValidationError("recommended and heldout differ in rows", field="recommended")
    if k is not None:
        if k <= 0:
            raise ValidationError("k must be positive", field="k")
        recs = recs[:, :k]
    return recs.astype(np.int64, copy=False)


def hits(recommended: np.ndarray, heldout: sp.spmatrix, k: int | None = None) -> np.ndarray:
    """Boolean ``n_users x k`` array: is the recommended item in the user's held-out set."""
    recs = _prepare(recommended, heldout, k)
    held = sp.csr_matrix(heldout)
    held.eliminate_zeros()
    n_items = np.int64(held.shape[1])
    rows = np.repeat(np.arange(held.shape[0], dtype=np.int64), np.diff(held.indptr))
    keys = np.sort(rows * n_items + held.indices.astype(np.int64))
    query = np.arange(recs.shape[0], dtype=np.int64)[:, None] * n_items + recs
    pos = np.searchsorted(keys, query)
    found = keys[np.minimum(pos, len(keys) - 1)] == query if len(keys) else np.zeros_like(recs)
    return np.asarray(found, dtype=bool) & (recs >= 0)


def _relevant_counts(heldout: sp.spmatrix) -> np.ndarray:
    held = sp.csr_matrix(heldout)
    held.eliminate_zeros()
    return np.diff(held.indptr)


def _mean_over_evaluable(values: np.ndarray, n_relevant: np.ndarray) -> float:
    mask = n_relevant > 0
    return float(values[mask].mean()) if mask.any() else 0.0


def recall_at_k(recommended: np.ndarray, heldout: sp.spmatrix, k: int = 10) -> float:
    """Hits in the top k over ``min(|relevant|, k)``, so a perfect list scores 1."""
    hit = hits(recommended, heldout, k)
    n_rel = _relevant_counts(heldout)
    per_user = hit.sum(axis=1) / np.maximum(np.minimum(n_rel, k), 1)
    return _mean_over_evaluable(per_user, n_rel)


def ndcg_at_k(recommended: np.ndarray, heldout: sp.spmatrix, k: int = 10) -> float:
    """NDCG with log2 discount; the ideal DCG places ``min(|relevant|, k)`` hits first."""
    hit = hits(recommended, heldout, k)
    n_rel = _relevant_counts(heldout)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit * discount[: hit.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k)]
    per_user = dcg / np.maximum(ideal, 1e-12)
    return _mean_over_evaluable(per_user, n_rel)


def map_at_k(recommended: np.ndarray, heldout: sp.spmatrix, k: int = 10) -> float:
    """Mean average precision: precision at each hit, summed over ``min(|relevant|, k)``."""
    hit = hits(recommended, heldout, k)
    n_rel = _relevant_counts(heldout)
    precision = np.cumsum(hit, axis=1) / np.arange(1, hit.shape[1] + 1)
    per_user = (precision * hit).sum(axis=1) / np.maximum(np.minimum(n_rel, k), 1)
    return _mean_over_evaluable(per_user, n_rel)


def coverage(recommended: np.ndarray, n_items: int) -> float:
    """Share of the catalogue that appears in at least one recommendation list."""
    if n_items <= 0:
        raise ValidationError("n_items must be positive", field="n_items")
    recs = np.asarray(recommended)
    return float(np.unique(recs[recs >= 0]).size / n_items)


def novelty(recommended: np.ndarray, train: sp.spmatrix) -> float:
    """Mean self-information ``-log2 p(i)`` in bits of the recommended items.

    ``p(i)`` is the share of training users who interacted with the item, smoothed as
    ``(count + 1) / (n_users + 1)`` so unseen items stay finite.
    """
    recs = np.asarray(recommended)
    valid = recs[recs >= 0]
    if valid.size == 0:
        return 0.0
    matrix = sp.csr_matrix(train)
    counts = np.bincount(matrix.indices[matrix.data > 0], minlength=matrix.shape[1])
    info = -np.log2((counts + 1.0) / (matrix.shape[0] + 1.0))
    return float(info[valid].mean())


def ranking_metrics(
    recommended: np.ndarray, heldout: sp.spmatrix, train: sp.spmatrix, k: int = 10
) -> dict[str, float]:
    """All metrics at once, keyed ``recall@k``, ``ndcg@k``, ``map@k``, ``coverage``, ``novelty``."""
    top = _prepare(recommended, heldout, k)
    return {
        f"recall@{k}": recall_at_k(top, heldout, k),
        f"ndcg@{k}": ndcg_at_k(top, heldout, k),
        f"map@{k}": map_at_k(top, heldout, k),
        "coverage": coverage(top, heldout.shape[1]),
        "novelty": novelty(top, train),
    }
