"""The one interface every recommender shares: fit, batch recommend with fold-in, save/load.

Subclasses provide dense scores for a batch of interaction rows (``_scores``) and their state as
named arrays; top-k selection, exclusion, filtering and the artifact format live here once.
"""

from __future__ import annotations

import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import scipy.sparse as sp

from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models._item_item import top_k_scores

__all__ = [
    "FORMAT_VERSION",
    "Recommender",
    "arrays_to_sparse",
    "read_manifest",
    "sparse_to_arrays",
    "top_k",
]

FORMAT_VERSION = 1
MANIFEST = "model.json"
ARRAYS = "arrays.npz"
CHUNK_ROWS = 512
SAMPLE_PER_K = 64
"""top_k samples about this many columns per wanted item to find each row's score floor."""
CROWDED_PER_K = 8
"""Rows with more than this many times the expected candidates (ties) use a full partition."""


def _dense_top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` by a full partition of every row (O(columns) per row)."""
    n_rows, n_cols = scores.shape
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    take = min(k, n_cols)
    if take == 0 or n_rows == 0:
        return ids, out
    if take < n_cols:
        part = np.argpartition(-scores, take - 1, axis=1)[:, :take]
    else:
        part = np.broadcast_to(np.arange(n_cols), (n_rows, n_cols))
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-part_scores, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    best_scores = np.take_along_axis(part_scores, order, axis=1)
    valid = np.isfinite(best_scores)
    ids[:, :take] = np.where(valid, best, -1)
    out[:, :take] = np.where(valid, best_scores, -np.inf)
    return ids, out


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns per row, best first; ``-inf`` scores become id ``-1`` (padding).

    The ``k``-th best score of a strided sample of each row is a floor that at least ``k``
    scores of the row reach, so only the few scores above it are ranked; rows where the floor
    is useless (``-inf``, or heavy ties) take the full partition.
    """
    n_rows, n_cols = scores.shape
    take = min(k, n_cols)
    stride = n_cols // (SAMPLE_PER_K * max(take, 1))
    if take == 0 or n_rows == 0 or stride < 2:
        return _dense_top_k(scores, k)
    sample = scores[:, ::stride]
    floor = np.partition(sample, sample.shape[1] - take, axis=1)[:, -take]
    flat = np.flatnonzero(scores >= floor[:, None])
    rows = flat // n_cols
    counts = np.bincount(rows, minlength=n_rows)
    crowded = ~np.isfinite(floor) | (counts > CROWDED_PER_K * stride * take)
    ids = np.full((n_rows, k), -1, dtype=np.int64)
    out = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if crowded.any():
        slow = np.flatnonzero(crowded)
        ids[slow], out[slow] = _dense_top_k(scores[slow], k)
        keep = ~crowded[rows]
        flat, rows = flat[keep], rows[keep]
        counts[slow] = 0
    if flat.size:
        starts = np.cumsum(counts) - counts
        rank = np.arange(flat.size) - starts[rows]
        dtype = np.result_type(scores.dtype, np.float32)
        padded = np.full((n_rows, int(counts.max())), -np.inf, dtype=dtype)
        padded[rows, rank] = scores.reshape(-1)[flat]
        columns = np.zeros(padded.shape, dtype=np.int64)
        columns[rows, rank] = flat % n_cols
        fast = np.flatnonzero(~crowded)
        best, best_scores = _dense_top_k(padded[fast], k)
        ids[fast] = np.where(best >= 0, np.take_along_axis(columns[fast], best.clip(0), 1), -1)
        out[fast] = best_scores
    return ids, out


def read_manifest(directory: Path) -> dict[str, Any]:
    """Read and check ``model.json`` of an artifact directory."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"model artifact has no {MANIFEST}: {path}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"model manifest is unreadable: {path}: {exc}") from exc
    if not isinstance(manifest, dict) or not {"name", "params", "format_version"} <= set(manifest):
        raise ModelError(f"model manifest lacks name, params or format_version: {path}")
    version = manifest["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelError(
            f"model format_version {version!r} is newer than supported ({FORMAT_VERSION}); "
            "upgrade dataflywheel to load it"
        )
    return manifest


class Recommender(ABC):
    """Abstract recommender over a users x items matrix of non-negative float32 weights."""

    name: ClassVar[str]

    def __init__(self, **params: Any) -> None:
        self._params = params
        self._n_items: int | None = None

    def params(self) -> dict[str, Any]:
        """The hyperparameters given to the constructor (JSON-able)."""
        return dict(self._params)

    @property
    def n_items(self) -> int:
        """Number of items (columns) the model was fitted on."""
        if self._n_items is None:
            raise ModelError(f"{self.name} model is not fitted")
        return self._n_items

    def fit(self, matrix: sp.spmatrix) -> Self:
        """Train on a users x items matrix of non-negative weights (see build_matrix)."""
        data = sp.csr_matrix(matrix, dtype=np.float32)
        if data.nnz and data.data.min() < 0:
            raise ValidationError("training weights must be non-negative", field="matrix")
        data.sum_duplicates()
        self._n_items = int(data.shape[1])
        self._fit(data)
        return self

    def recommend(
        self,
        user_rows: sp.spmatrix,
        k: int,
        *,
        user_ids: np.ndarray | None = None,
        exclude: sp.spmatrix | None = None,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k items for each row of ``user_rows`` (the users' current interactions).

        Consumed items (the nonzeros of ``user_rows``, or of ``exclude`` when given) and items
        outside the boolean ``allowed`` mask are never returned; short lists pad with -1 / -inf.
        """
        if k <= 0:
            raise ValidationError("k must be positive", field="k")
        rows = self._rows(user_rows)
        excluded = rows if exclude is None else self._rows(exclude, field="exclude")
        if excluded.shape[0] != rows.shape[0]:
            raise ValidationError("exclude must have one row per user", field="exclude")
        mask = self._allowed(allowed)
        linear = self._item_item()
        if linear is not None:
            similarity, offsets = linear
            base = offsets.copy() if offsets is not None else np.zeros(self.n_items, np.float32)
            if mask is not None:
                base[~mask] = -np.inf
            return top_k_scores(rows, similarity, base, excluded, k)
        ids_hint = self._ids(user_ids, rows.shape[0])
        all_ids = np.full((rows.shape[0], k), -1, dtype=np.int64)
        all_scores = np.full((rows.shape[0], k), -np.inf, dtype=np.float32)
        for start in range(0, rows.shape[0], CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, rows.shape[0])
            hint = None if ids_hint is None else ids_hint[start:stop]
            scores = np.array(self._scores(rows[start:stop], hint), dtype=np.float32)
            block = excluded[start:stop]
            scores[
                np.repeat(np.arange(stop - start), np.diff(block.indptr)), block.indices
            ] = -np.inf
            if mask is not None:
                scores[:, ~mask] = -np.inf
            all_ids[start:stop], all_scores[start:stop] = top_k(scores, k)
        return all_ids, all_scores

    def score(self, user_rows: sp.spmatrix, item_ids: np.ndarray) -> np.ndarray:
        """Scores of ``item_ids`` (1-D: same items for every row; 2-D: per row) for each row."""
        rows = self._rows(user_rows)
        items = np.asarray(item_ids, dtype=np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.n_items):
            raise ValidationError("item id out of range", field="item_ids")
        scores = np.asarray(self._scores(rows, None), dtype=np.float32)
        if items.ndim == 1:
            whole = items.size == self.n_items and bool((items == np.arange(items.size)).all())
            if whole:
                return scores if scores.flags.writeable else scores.copy()
            return scores[:, items]
        if items.ndim == 2 and items.shape[0] == rows.shape[0]:
            return np.take_along_axis(scores, items, axis=1)
        raise ValidationError("item_ids must be 1-D or one row per user", field="item_ids")

    def similar_items(self, item_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` items most related to ``item_id`` (the item itself excluded)."""
        if k <= 0:
            raise ValidationError("k must be positive", field="k")
        if not 0 <= item_id < self.n_items:
            raise ValidationError("item id out of range", field="item_id")
        scores = np.array(self._item_similarity(item_id), dtype=np.float32)[None, :]
        scores[0, item_id] = -np.inf
        ids, values = top_k(scores, k)
        return ids[0], values[0]

    def save(self, directory: Path) -> None:
        """Write ``model.json`` and ``arrays.npz`` (no pickle) into ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        with (path / ARRAYS).open("wb") as handle:
            np.savez(handle, allow_pickle=False, **self._arrays())
        manifest = {
            "name": self.name,
            "params": self.params(),
            "format_version": FORMAT_VERSION,
            "n_items": self.n_items,
        }
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> Self:
        """Load a model saved by :meth:`save`; raises ModelError if it cannot be used."""
        manifest = read_manifest(directory)
        if manifest["name"] != cls.name:
            raise ModelError(f"artifact holds a {manifest['name']!r} model, not {cls.name!r}")
        try:
            model = cls(**manifest["params"])
            with np.load(Path(directory) / ARRAYS, allow_pickle=False) as npz:
                arrays = {key: npz[key] for key in npz.files}
            model._n_items = int(manifest["n_items"])
            model._restore(arrays)
        except FileNotFoundError as exc:
            raise ModelError(f"model artifact has no {ARRAYS}: {directory}") from exc
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as exc:
            raise ModelError(f"model artifact is corrupt: {directory}: {exc}") from exc
        return model

    def _rows(self, matrix: sp.spmatrix, field: str = "user_rows") -> sp.csr_matrix:
        fit = isinstance(matrix, sp.csr_matrix) and matrix.dtype == np.float32
        rows = matrix if fit else sp.csr_matrix(matrix, dtype=np.float32)
        if rows.shape[1] != self.n_items:
            raise ValidationError(
                f"{field} has {rows.shape[1]} columns, the model has {self.n_items} items",
                field=field,
            )
        return rows

    def _allowed(self, allowed: np.ndarray | None) -> np.ndarray | None:
        if allowed is None:
            return None
        mask = np.asarray(allowed, dtype=bool)
        if mask.shape != (self.n_items,):
            raise ValidationError("allowed must be a boolean mask over items", field="allowed")
        return mask

    @staticmethod
    def _ids(user_ids: np.ndarray | None, n_rows: int) -> np.ndarray | None:
        if user_ids is None:
            return None
        ids = np.asarray(user_ids, dtype=np.int64)
        if ids.shape != (n_rows,):
            raise ValidationError("user_ids must have one entry per row", field="user_ids")
        return ids

    def _item_similarity(self, item_id: int) -> np.ndarray:
        """Scores of every item for a user who consumed only ``item_id``; override if better."""
        row = sp.csr_matrix(
            (np.ones(1, dtype=np.float32), ([0], [item_id])), shape=(1, self.n_items)
        )
        return np.asarray(self._scores(row, None))[0]

    def _item_item(self) -> tuple[sp.csr_matrix, np.ndarray | None] | None:
        """``(S, offsets)`` when this model's scores are ``offsets + row @ S`` for a sparse
        item-item ``S`` (offsets None: zero): :meth:`recommend` then ranks in one compiled pass.
        """
        return None

    @abstractmethod
    def _fit(self, matrix: sp.csr_matrix) -> None:
        """Learn the model state from a validated float32 CSR matrix."""

    @abstractmethod
    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        """Dense ``len(rows) x n_items`` scores; ``user_ids`` is only a speed hint."""

    @abstractmethod
    def _arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named numeric arrays."""

    @abstractmethod
    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild the fitted state from :meth:`_arrays` output."""


def sparse_to_arrays(prefix: str, matrix: sp.csr_matrix) -> dict[str, np.ndarray]:
    """Flatten a CSR matrix into named arrays for an ``.npz`` artifact."""
    return {
        f"{prefix}_data": matrix.data,
        f"{prefix}_indices": matrix.indices,
        f"{prefix}_indptr": matrix.indptr,
        f"{prefix}_shape": np.asarray(matrix.shape, dtype=np.int64),
    }


def arrays_to_sparse(prefix: str, arrays: dict[str, np.ndarray]) -> sp.csr_matrix:
    """Inverse of :func:`sparse_to_arrays`."""
    shape = tuple(int(v) for v in arrays[f"{prefix}_shape"])
    return sp.csr_matrix(
        (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
        shape=shape,
    )
