"""Scores for items the champion has not seen (upserted or first named after its training),
from their content, on the champion's own scale.

A user's content score of an item is the cosine between the item's content vector and the
user's content profile (:mod:`dataflywheel.learn.content`), plus ``prior_weight`` times a
standardised popularity predicted from the content (a ridge regression of the champion
snapshot's log-popularity on the content vectors of the items it knows). A new item's champion
score is then read off the user's own curve: the champion scores of a fixed sample of known
items, against their content scores, interpolated at the new item's content score. An item
that looks to this user like their top tenth by content gets a score like their champion top
tenth, so it competes for the same slots; the collaborative score takes over once a retrained
champion knows the item.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import Ridge

from dataflywheel.learn.content import ContentIndex

CALIBRATION_SAMPLE = 2_000
"""Known items whose champion scores define a user's curve (bounds the per-request cost)."""
RIDGE_ALPHA = 1.0
CACHED_MODELS = 8


FOLDS = 5


@dataclass(frozen=True)
class _Fit:
    """What a champion fixes under one vocabulary: the content prior and the calibration
    sample (warm items: a positive interaction in the champion's snapshot)."""

    warm_prior: np.ndarray
    coef: np.ndarray
    intercept: float
    mean: float
    spread: float
    sample: np.ndarray

    def prior(self, vectors: sp.csr_matrix, ids: np.ndarray) -> np.ndarray:
        """Standardised content prior of ``ids``: out-of-fold for warm items, so that warm and
        cold items are judged alike (in-fold, a warm item's own words recall its count)."""
        out = np.zeros(ids.size)
        inside = ids < self.warm_prior.size
        out[inside] = self.warm_prior[ids[inside]]
        guess = np.isnan(out) | ~inside
        if guess.any() and self.coef.size:
            rows = vectors[ids[guess]]
            width = min(rows.shape[1], self.coef.size)
            predicted = rows[:, :width] @ self.coef[:width] + self.intercept
            out[guess] = (predicted - self.mean) / self.spread
        return np.nan_to_num(out)


def _same(old: tuple[int, np.ndarray] | None, new: tuple[int, np.ndarray]) -> bool:
    """The same vocabulary generation and the very same popularity array."""
    return old is not None and old[0] == new[0] and old[1] is new[1]


def _row_entries(vectors: sp.csr_matrix, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the entries of ``rows`` sit in the CSR arrays of ``vectors``, and which of
    ``rows`` each belongs to: a gather in plain numpy, where slicing a few rows of a CSR
    matrix costs scipy a new matrix and its checks (most of a request's content scoring)."""
    starts = vectors.indptr[rows]
    lengths = vectors.indptr[rows + 1] - starts
    owner = np.repeat(np.arange(rows.size), lengths)
    first = np.cumsum(lengths) - lengths
    return np.repeat(starts - first, lengths) + np.arange(owner.size), owner


def _dot_rows(vectors: sp.csr_matrix, rows: np.ndarray, dense: np.ndarray) -> np.ndarray:
    """``vectors[rows] @ dense`` for a dense vector."""
    at, owner = _row_entries(vectors, rows)
    products = vectors.data[at] * dense[vectors.indices[at]]
    return np.bincount(owner, weights=products, minlength=rows.size)


def _profile(row: sp.csr_matrix, vectors: sp.csr_matrix) -> np.ndarray:
    """One user's content profile as a dense vector: what
    :func:`~dataflywheel.learn.content.profiles` gives for one row, without building sparse
    matrices on the request path."""
    inside = row.indices < vectors.shape[0]
    items, weights = row.indices[inside], np.maximum(row.data[inside], 0.0)
    at, owner = _row_entries(vectors, items)
    summed = np.bincount(
        vectors.indices[at], weights=vectors.data[at] * weights[owner], minlength=vectors.shape[1]
    )
    norm = float(np.sqrt(summed @ summed))
    return summed / norm if norm > 0 else summed


class ContentScorer:
    """Fills in scores of unseen items for one process; its fit is redone when the champion
    or the content vocabulary changes."""

    def __init__(self, index: ContentIndex, prior_weight: float = 0.1, seed: int = 0) -> None:
        self.index = index
        self.prior_weight = prior_weight
        self._seed = seed
        self._fit: _Fit | None = None
        # Keys hold the arrays themselves, not their id(): a freed array's id() is reused.
        self._key: tuple[int, np.ndarray] | None = None
        self._lock = threading.Lock()
        # Keyed by the model's item count too: experiment arms may differ from the champion.
        self._cold: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._unseen: dict[tuple[int, int], tuple[np.ndarray, sp.csr_matrix, np.ndarray]] = {}
        self._vectors: sp.csr_matrix | None = None
        self._priors: tuple[_Fit, sp.csr_matrix, np.ndarray] | None = None
        self._samples: tuple[_Fit, sp.csr_matrix, np.ndarray, sp.csr_matrix] | None = None

    def cold(self, n_known: int, popularity: np.ndarray) -> np.ndarray:
        """Which of the champion's items had no positive interaction in its snapshot: their
        champion scores carry no evidence."""
        key = (n_known, id(popularity))
        cached = self._cold.get(key)
        if cached is None or cached[0] is not popularity:
            counts = np.zeros(n_known)
            counts[: min(n_known, popularity.size)] = popularity[:n_known]
            cold = counts <= 0
            if len(self._cold) >= CACHED_MODELS:
                self._cold.clear()
            cached = self._cold[key] = (popularity, cold)
        return cached[1]

    def unseen(self, allowed: np.ndarray, n_known: int, popularity: np.ndarray) -> np.ndarray:
        """The allowed items to score from content: cold to the champion (created after it,
        or no positive interaction in its snapshot) and described by some metadata."""
        vectors = self.index.matrix(allowed.size)
        if vectors is not self._vectors:  # entries of an older matrix go with it
            self._unseen.clear()
            self._vectors = vectors
        key = (n_known, id(popularity))
        cached = self._unseen.get(key)
        if cached is None or cached[0] is not popularity or cached[1] is not vectors:
            mask = np.diff(vectors.indptr) > 0
            width = min(n_known, mask.size)
            mask[:width] &= self.cold(n_known, popularity)[:width]
            if len(self._unseen) >= CACHED_MODELS:
                self._unseen.clear()
            # Their indices, usually few: a request then reads those, not the whole catalogue.
            cached = self._unseen[key] = (popularity, vectors, np.flatnonzero(mask))
        unseen = cached[2][cached[2] < allowed.size]
        return unseen[allowed[unseen]]

    def fill(
        self,
        scores: np.ndarray,
        row: sp.csr_matrix,
        wanted: np.ndarray,
        popularity: np.ndarray,
    ) -> None:
        """Set ``scores[wanted]`` (items new or cold to the champion) on the champion's scale."""
        vectors = self.index.matrix(scores.size)
        fit = self._fitted(vectors, popularity)
        sample, sample_vectors = self._sample_vectors(fit, vectors)
        profile = _profile(row, vectors)
        known = sample_vectors @ profile
        new = _dot_rows(vectors, wanted, profile)
        if self.prior_weight:
            prior = self.prior_weight * self._prior(fit, vectors)
            known, new = known + prior[sample], new + prior[wanted]
        # The curve is drawn from the sample items this request's champion scores are kept for.
        scored = sample < scores.size
        scored[scored] = np.isfinite(scores[sample[scored]])
        sample, known = sample[scored], known[scored]
        if sample.size == 0:
            scores[wanted] = new
            return
        # Rank to rank: the new item's content quantile among the sample (ties share their
        # mean quantile) picks the user's champion score at the same quantile.
        quantiles = np.linspace(0.0, 1.0, sample.size)
        levels, inverse = np.unique(np.sort(known), return_inverse=True)
        level_quantile = np.bincount(inverse, weights=quantiles) / np.bincount(inverse)
        position = np.interp(new, levels, level_quantile)
        scores[wanted] = np.interp(position, quantiles, np.sort(scores[sample]))

    def _sample_vectors(
        self, fit: _Fit, vectors: sp.csr_matrix
    ) -> tuple[np.ndarray, sp.csr_matrix]:
        """The calibration sample and its rows of ``vectors``, kept until either changes."""
        cached = self._samples
        if cached is None or cached[0] is not fit or cached[1] is not vectors:
            sample = fit.sample[fit.sample < vectors.shape[0]]
            cached = self._samples = (fit, vectors, sample, vectors[sample])
        return cached[2], cached[3]

    def _prior(self, fit: _Fit, vectors: sp.csr_matrix) -> np.ndarray:
        """The content prior of every item, kept until the fit or the vectors change."""
        cached = self._priors
        if cached is None or cached[0] is not fit or cached[1] is not vectors:
            cached = self._priors = (fit, vectors, fit.prior(vectors, np.arange(vectors.shape[0])))
        return cached[2]

    def _fitted(self, vectors: sp.csr_matrix, popularity: np.ndarray) -> _Fit:
        key = (self.index.generation, popularity)
        fit = self._fit
        if fit is not None and _same(self._key, key):
            return fit
        with self._lock:
            if self._fit is None or not _same(self._key, key):
                self._fit, self._key = self._make(vectors, popularity), key
            return self._fit

    def _make(self, vectors: sp.csr_matrix, popularity: np.ndarray) -> _Fit:
        """The prior and sample of the champion's snapshot (``popularity``: its positive
        interactions per item), shared by every arm that serves over the same snapshot."""
        n_known = popularity.size
        counts = np.asarray(popularity, dtype=np.float64)
        cold = counts <= 0
        rng = np.random.default_rng(self._seed)
        warm = np.flatnonzero(~cold[: vectors.shape[0]])
        sample = np.sort(rng.permutation(warm)[:CALIBRATION_SAMPLE]).astype(np.int64)
        warm_prior = np.full(n_known, np.nan)
        # Warm items with no metadata say nothing about what content predicts.
        described = warm[np.diff(vectors.indptr)[warm] > 0]
        y = np.log1p(counts[described])
        if not self.prior_weight or described.size < 2 * FOLDS or y.std() == 0:
            return _Fit(np.zeros(n_known), np.zeros(0), 0.0, 0.0, 1.0, sample)
        x = vectors[described]
        oof = np.zeros(described.size)
        # Balanced folds: a random draw could leave one empty, or the rest empty (no fit).
        folds = rng.permutation(described.size) % FOLDS
        for fold in range(FOLDS):
            part = folds == fold
            oof[part] = Ridge(alpha=RIDGE_ALPHA).fit(x[~part], y[~part]).predict(x[part])
        ridge = Ridge(alpha=RIDGE_ALPHA).fit(x, y)
        mean, spread = float(oof.mean()), float(oof.std()) or 1.0
        warm_prior[described] = (oof - mean) / spread
        coef = np.asarray(ridge.coef_, dtype=np.float64)
        return _Fit(warm_prior, coef, float(ridge.intercept_), mean, spread, sample)
