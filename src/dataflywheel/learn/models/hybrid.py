"""A hybrid of a collaborative model and the items' content: a blend of the two scores.

A user's content score of an item is the cosine between the item's content vector
(:mod:`dataflywheel.learn.content`: TF-IDF of its text and its categories) and the user's
content profile, the weighted mean of the vectors of the items in their row; like the
collaborative part it follows the user's newest events with no refit. Each part is centred on
its row mean and scaled so that the row's best item scores 1, then the two are mixed by
``content_weight``, which the search picks (with the collaborative part) on the temporal
validation split. Without content vectors the hybrid ranks as its collaborative part.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from dataflywheel.errors import ModelError, ValidationError
from dataflywheel.learn.models.base import (
    CHUNK_ROWS,
    Recommender,
    arrays_to_sparse,
    sparse_to_arrays,
    top_k,
)
from dataflywheel.learn.models.bpr import BPR
from dataflywheel.learn.models.ease import EASE, UNSEEN
from dataflywheel.learn.models.ials import IALS
from dataflywheel.learn.models.itemknn import ItemKNN
from dataflywheel.learn.models.popularity import Popularity
from dataflywheel.learn.models.rp3beta import RP3Beta

__all__ = ["BASES", "Hybrid"]

BASES: dict[str, type[Recommender]] = {
    cls.name: cls for cls in (EASE, RP3Beta, ItemKNN, IALS, BPR, Popularity)
}
"""The collaborative models a hybrid can blend with content."""
BASE_DIR = "base"
"""Subdirectory of the artifact holding the collaborative part, saved as a model of its own."""


def _unit(scores: np.ndarray) -> np.ndarray:
    """Each row minus its mean, divided by (its best score minus the mean): the best item scores
    1, an average one 0. Items a model cannot score (-inf, or EASE's floor for items without
    training events) take the row's lowest score, so the content can still lift them."""
    valid = np.isfinite(scores) & (scores > UNSEEN)
    counts = valid.sum(axis=1)
    mean = np.where(valid, scores, 0.0).sum(axis=1) / np.maximum(counts, 1)
    top = np.where(valid, scores, -np.inf).max(axis=1)
    low = np.where(valid, scores, np.inf).min(axis=1)
    mean[counts == 0] = low[counts == 0] = top[counts == 0] = 0.0
    scale = top - mean
    scale[~(scale > 0)] = 1.0
    filled = np.where(valid, scores, low[:, None])
    return np.asarray((filled - mean[:, None]) / scale[:, None], dtype=np.float32)


class Hybrid(Recommender):
    """``(1 - w) · unit(collaborative) + w · unit(content cosine)`` with ``w = content_weight``.

    ``base`` names the collaborative model and ``base_params`` its parameters. The items'
    content vectors (rows of :meth:`ContentIndex.matrix`, by dense item id) are given with
    :meth:`use_content` before :meth:`fit` and saved in the artifact, so serving needs no
    catalogue to score the items the fit knew; newer items are serving's cold start.
    """

    name = "hybrid"

    def __init__(
        self,
        base: str = "ease",
        base_params: dict[str, Any] | None = None,
        content_weight: float = 0.2,
    ) -> None:
        cls = BASES.get(base)
        if cls is None:
            raise ValidationError(
                f"unknown base model {base!r}; choose one of {sorted(BASES)}", field="base"
            )
        weight = float(content_weight)
        if not 0.0 <= weight <= 1.0:
            raise ValidationError("content_weight must be from 0 to 1", field="content_weight")
        part = cls(**(base_params or {}))
        super().__init__(base=base, base_params=part.params(), content_weight=weight)
        self._base = part
        self._given: sp.csr_matrix | None = None
        self._content = sp.csr_matrix((0, 0), dtype=np.float32)

    def use_content(self, vectors: sp.spmatrix | None) -> Self:
        """The items' content vectors (by dense item id) for the next :meth:`fit`."""
        self._given = None if vectors is None else sp.csr_matrix(vectors, dtype=np.float32)
        return self

    @classmethod
    def around(
        cls, base: Recommender, content: sp.spmatrix | None, content_weight: float
    ) -> Hybrid:
        """A hybrid over an already fitted collaborative model, which it shares (the search
        scores many content weights over one fit of the collaborative part)."""
        model = cls(base.name, base.params(), content_weight)
        model._base = base
        model._n_items = base.n_items
        model._set_content(None if content is None else sp.csr_matrix(content, dtype=np.float32))
        return model

    @property
    def base(self) -> Recommender:
        """The collaborative part."""
        return self._base

    def recommend_blends(
        self, user_rows: sp.spmatrix, k: int, weights: Sequence[float], *, exclude: sp.spmatrix
    ) -> list[np.ndarray]:
        """Top-k item ids per row for each content weight in ``weights`` (this model's own
        weight aside), never one of ``exclude``'s nonzeros: both parts are scored once."""
        if k <= 0:
            raise ValidationError("k must be positive", field="k")
        rows = self._rows(user_rows)
        excluded = self._rows(exclude, field="exclude")
        lists = [np.full((rows.shape[0], k), -1, dtype=np.int64) for _ in weights]
        for start in range(0, rows.shape[0], CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, rows.shape[0])
            collab, content = self._parts(rows[start:stop])
            block = excluded[start:stop]
            taken = (np.repeat(np.arange(stop - start), np.diff(block.indptr)), block.indices)
            for ids, weight in zip(lists, weights, strict=True):
                scores = (1.0 - weight) * collab + weight * content
                scores[taken] = -np.inf
                ids[start:stop] = top_k(scores, k)[0]
        return lists

    def save(self, directory: Path) -> None:
        """The content vectors as this model's arrays, the collaborative part in ``base/``."""
        super().save(directory)
        self._base.save(Path(directory) / BASE_DIR)

    @classmethod
    def load(cls, directory: Path) -> Self:
        model = super().load(directory)
        base = BASES[model._params["base"]].load(Path(directory) / BASE_DIR)
        if base.n_items != model.n_items:
            raise ModelError(
                f"hybrid artifact's collaborative part has {base.n_items} items, "
                f"not {model.n_items}: {directory}"
            )
        model._base = base
        return model

    def _set_content(self, vectors: sp.csr_matrix | None) -> None:
        """Keep exactly one content row per item: items past the vectors have no content."""
        n_items = self.n_items
        if vectors is None:
            vectors = sp.csr_matrix((n_items, 0), dtype=np.float32)
        if vectors.shape[0] >= n_items:
            vectors = vectors[:n_items]
        else:
            missing = sp.csr_matrix(
                (n_items - vectors.shape[0], vectors.shape[1]), dtype=np.float32
            )
            vectors = sp.vstack([vectors, missing], format="csr")
        self._content = sp.csr_matrix(vectors, dtype=np.float32)

    def _parts(self, rows: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """The collaborative and content scores of ``rows``, each on the unit scale."""
        collab = _unit(self._base.score(rows, np.arange(self.n_items)))
        if not self._content.nnz:
            return collab, np.zeros_like(collab)
        return collab, _unit(self._cosines(rows))

    def _cosines(self, rows: sp.csr_matrix) -> np.ndarray:
        """Cosine of each row's content profile (as in ``content.profiles``) to every item, as
        two sparse-by-dense products: the sparse product with the transposed content made a
        one-user request about 3 times slower."""
        weights = sp.csr_matrix(rows, dtype=np.float32)
        weights.data = np.maximum(weights.data, 0)
        width = min(weights.shape[1], self._content.shape[0])
        profile = (weights[:, :width] @ self._content[:width]).toarray()
        norms = np.linalg.norm(profile, axis=1, keepdims=True)
        profile /= np.where(norms == 0, 1, norms)
        return np.asarray(self._content @ profile.T).T

    def _fit(self, matrix: sp.csr_matrix) -> None:
        self._base.fit(matrix)
        self._set_content(self._given)

    def _scores(self, rows: sp.csr_matrix, user_ids: np.ndarray | None) -> np.ndarray:
        weight = self._params["content_weight"]
        if weight == 0 or not self._content.nnz:
            return np.asarray(self._base.score(rows, np.arange(self.n_items)))
        collab, content = self._parts(rows)
        collab *= 1.0 - weight
        collab += weight * content
        return collab

    def _arrays(self) -> dict[str, np.ndarray]:
        return sparse_to_arrays("content", self._content)

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._set_content(arrays_to_sparse("content", arrays).astype(np.float32))
