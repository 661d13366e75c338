"""Content vectors of items from their metadata, and users' content profiles.

An item's vector joins two L2-normalised blocks: TF-IDF over its text (``title``,
``description`` and every other string attribute) and a one-hot of its categories plus its
short string attributes as ``key=value`` tokens. A user's profile is the weighted mean of the
vectors of the items in their row, so it follows their newest events with no refit.

The index is incremental: items are recorded as they are read from the catalogue and only new
or changed ones are vectorised again. The TF-IDF vocabulary is fitted on the catalogue the
first time vectors are needed and refitted once the catalogue has grown by half; words first
seen in items added in between are ignored until then (their categories never are).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

__all__ = ["ContentIndex", "item_text", "item_tokens", "profiles"]

TEXT_FIELDS = ("title", "description")
SHORT_VALUE = 64
"""String attributes up to this length are also categorical tokens (``key=value``)."""
REFIT_GROWTH = 1.5


def item_text(attributes: Mapping[str, Any]) -> str:
    """The text of an item: title and description first, then its other string attributes."""
    first = [attributes.get(name) for name in TEXT_FIELDS]
    rest = [value for key, value in sorted(attributes.items()) if key not in TEXT_FIELDS]
    return " ".join(value for value in (*first, *rest) if isinstance(value, str))


def item_tokens(categories: Iterable[Any], attributes: Mapping[str, Any]) -> list[str]:
    """Categorical tokens: each category, and ``key=value`` for short string attributes."""
    tokens = [f"c:{category}" for category in categories]
    tokens += [
        f"a:{key}={value}"
        for key, value in attributes.items()
        if key not in TEXT_FIELDS and isinstance(value, str) and len(value) <= SHORT_VALUE
    ]
    return sorted(set(tokens))


def _normalise(matrix: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit length, in place (empty rows stay empty)."""
    rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
    norms = np.sqrt(np.bincount(rows, weights=matrix.data**2, minlength=matrix.shape[0]))
    norms[norms == 0] = 1.0
    matrix.data /= norms[rows].astype(matrix.data.dtype)
    return matrix


class ContentIndex:
    """Content vectors by dense item id (rows of an L2-normalised CSR matrix)."""

    def __init__(self, text_weight: float = 0.5) -> None:
        self.text_weight = text_weight
        self._meta: dict[int, tuple[str, tuple[str, ...]]] = {}
        self._dirty: set[int] = set()
        self._vectorizer: TfidfVectorizer | None = None
        self._fitted_on = 0
        self._tokens: dict[str, int] = {}
        self._rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._matrix: sp.csr_matrix | None = None
        self._lock = threading.Lock()
        self.generation = 0
        """Counts vocabulary fits: columns keep their meaning within one generation."""

    def update(self, records: Iterable[tuple[int, Any, Any]], complete: bool = False) -> None:
        """Record items' ``(idx, categories, attributes)``; only new or changed ones are
        vectorised again. ``complete``: these are all the items (others were erased)."""
        with self._lock:
            seen = set()
            for idx, categories, attributes in records:
                attrs = attributes if isinstance(attributes, Mapping) else {}
                meta = (item_text(attrs), tuple(item_tokens(categories or (), attrs)))
                seen.add(idx)
                if self._meta.get(idx) != meta:
                    self._meta[idx] = meta
                    self._dirty.add(idx)
            for idx in set(self._meta) - seen if complete else ():
                del self._meta[idx]
                self._rows.pop(idx, None)
                self._dirty.add(idx)

    def matrix(self, size: int) -> sp.csr_matrix:
        """Vectors of at least items ``0..size-1`` (items without metadata: zero rows); the
        same object until an item changes, so callers may cache what they derive from it."""
        current = self._matrix
        # The request path: nothing to do, no lock (a concurrent update shows next time).
        if current is not None and not self._dirty and current.shape[0] >= size:
            return current
        with self._lock:
            if self._vectorizer is None or len(self._meta) >= REFIT_GROWTH * self._fitted_on:
                self._fit()
                self._matrix = None
            if self._dirty:
                changed = sorted(self._dirty & set(self._meta))
                if changed:
                    self._vectorise(changed)
                self._dirty.clear()
                self._matrix = None
            if self._matrix is None or self._matrix.shape[0] < size:
                self._matrix = self._assemble(max(size, max(self._meta, default=-1) + 1))
            return self._matrix

    def _fit(self) -> None:
        texts = [text for text, _ in self._meta.values()]
        vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float32)
        try:
            vectorizer.fit(texts)
        except ValueError:  # no words anywhere in the catalogue
            vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float32, vocabulary=["_"])
            vectorizer.fit(["_"])
        self._vectorizer, self._fitted_on = vectorizer, max(len(self._meta), 1)
        self.generation += 1
        self._dirty = set(self._meta)

    @property
    def _width(self) -> int:
        assert self._vectorizer is not None
        return len(self._vectorizer.vocabulary_)

    def _vectorise(self, ids: list[int]) -> None:
        assert self._vectorizer is not None
        text = self._vectorizer.transform([self._meta[i][0] for i in ids]).tocsr()
        weight = np.float32(np.sqrt(self.text_weight))
        for row, idx in enumerate(ids):
            lo, hi = text.indptr[row], text.indptr[row + 1]
            columns = [self._tokens.setdefault(t, len(self._tokens)) for t in self._meta[idx][1]]
            tokens = np.full(len(columns), 1.0 / np.sqrt(max(len(columns), 1)), np.float32)
            words = text.data[lo:hi] * weight
            values = np.concatenate([words, tokens])
            norm = float(np.linalg.norm(values))
            # Token columns sit after the vocabulary; their offset is added when assembling.
            self._rows[idx] = (
                np.concatenate([text.indices[lo:hi], -1 - np.asarray(columns, dtype=np.int64)]),
                values / norm if norm else values,
            )

    def _assemble(self, size: int) -> sp.csr_matrix:
        width = self._width
        indptr = np.zeros(size + 1, dtype=np.int64)
        parts_i, parts_v = [], []
        for idx in range(size):
            found = self._rows.get(idx)
            if found is not None:
                indices, values = found
                parts_i.append(np.where(indices < 0, width - 1 - indices, indices))
                parts_v.append(values)
                indptr[idx + 1] = indices.size
        indices = np.concatenate(parts_i) if parts_i else np.zeros(0, np.int64)
        values = np.concatenate(parts_v) if parts_v else np.zeros(0, np.float32)
        return sp.csr_matrix(
            (values.astype(np.float32), indices, np.cumsum(indptr)),
            shape=(size, width + max(len(self._tokens), 1)),
        )


def profiles(rows: sp.csr_matrix, vectors: sp.csr_matrix) -> sp.csr_matrix:
    """Users' content profiles: the weighted mean of the vectors of the items in each row
    (negative weights ignored), L2-normalised, so ``vectors @ profile`` is a cosine."""
    weights = sp.csr_matrix(rows, dtype=np.float32)
    weights.data = np.maximum(weights.data, 0)
    width = min(weights.shape[1], vectors.shape[0])
    return _normalise(sp.csr_matrix(weights[:, :width] @ vectors[:width]))
