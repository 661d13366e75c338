"""Chunked construction of sparse item-item matrices that keep each row's top neighbours."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

__all__ = ["top_neighbours"]

CHUNK_ITEMS = 1024


def top_neighbours(
    left: sp.csr_matrix,
    right: sp.csr_matrix,
    neighbours: int,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> sp.csr_matrix:
    """Sparse ``left @ right`` after ``transform(block, row_ids)``, keeping the top entries per row.

    Works on dense blocks of rows so memory stays bounded; the diagonal is always dropped.
    """
    n_rows, n_cols = left.shape[0], right.shape[1]
    keep = max(0, min(neighbours, n_cols - 1))
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    for start in range(0, n_rows, CHUNK_ITEMS):
        stop = min(start + CHUNK_ITEMS, n_rows)
        ids = np.arange(start, stop)
        block = transform(np.asarray((left[start:stop] @ right).todense()), ids)
        block[ids - start, ids] = 0.0
        if keep == 0:
            continue
        best = np.argpartition(-block, keep - 1, axis=1)[:, :keep]
        values = np.take_along_axis(block, best, axis=1)
        positive = values > 0
        rows.append(np.repeat(ids, keep).reshape(-1, keep)[positive])
        cols.append(best[positive])
        vals.append(values[positive])
    if not rows:
        return sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(n_rows, n_cols),
        dtype=np.float32,
    )
