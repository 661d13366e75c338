"""What the value-of-data measures share: the events with their types, one temporal holdout,
per-user NDCG of a configuration trained on any subset of the training events, and bootstraps.

Every comparison (a share of the data, a slice left out) is scored on the same held-out events
(:class:`~dataflywheel.learn.trainer.Holdout`), per user, so two arms can be compared user by
user (paired) and their intervals come from resampling users.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sqlalchemy import select

from dataflywheel.errors import TrainingError
from dataflywheel.evaluation.ranking import hits
from dataflywheel.learn.item_content import read_item_content
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import create
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import EventArrays, Snapshot, entity_count, weight_expression
from dataflywheel.learn.trainer import MIN_EVENTS, Holdout
from dataflywheel.store import schema
from dataflywheel.store.store import Store

K = 10
DEFAULT_MODEL: tuple[str, dict[str, Any], dict[str, Any]] = ("itemknn", {}, {})
"""Measured when no champion exists: a fast, deterministic neighbourhood model."""
CONFIDENCE = 0.95


@dataclass
class Config:
    """The configuration whose appetite for data is measured (the champion's, if any)."""

    name: str
    params: dict[str, Any]
    matrix: dict[str, Any]
    version: str | None

    @classmethod
    def of(cls, registry: Registry) -> Config:
        champion = registry.champion()
        if champion is None:
            name, params, matrix = DEFAULT_MODEL
            return cls(name, dict(params), dict(matrix), None)
        params = champion["params"]
        return cls(
            champion["name"],
            dict(params.get("model", {})),
            dict(params.get("matrix", {})),
            champion["version"],
        )

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "params": self.params, "matrix": self.matrix}


class ValueData:
    """The store's weighted item events up to a watermark, their types, and one holdout."""

    def __init__(self, store: Store, config: Config, upto: int | None = None) -> None:
        """Read the events with ``id <= upto`` (default: every event so far)."""
        self.store = store
        self.config = config
        self.watermark = store.latest_event_id() if upto is None else upto
        e = schema.events.c
        query = (
            select(e.id, e.user_idx, e.item_idx, weight_expression(store.settings), e.ts, e.type)
            .where(e.item_idx.is_not(None), e.id <= self.watermark)
            .order_by(e.id)
        )
        with store.read() as conn:
            rows = conn.execute(query).all()
        if len(rows) < MIN_EVENTS:
            raise TrainingError(
                f"only {len(rows)} item events in the store; need {MIN_EVENTS} to measure value"
            )
        ids, users, items, weights, stamps, types = zip(*rows, strict=True)
        self.ids = np.asarray(ids, dtype=np.int64)
        self.events = EventArrays(
            np.asarray(users, dtype=np.int64),
            np.asarray(items, dtype=np.int64),
            np.asarray(weights, dtype=np.float64),
            np.asarray(stamps, dtype=np.float64),
        )
        names, codes = np.unique(np.asarray(types, dtype=object).astype(str), return_inverse=True)
        self.type_names: list[str] = [str(n) for n in names]
        self.type_code = codes.astype(np.int64)
        self.n_users = entity_count(store, schema.users)
        self.n_items = entity_count(store, schema.items)
        snapshot = Snapshot(
            id=f"value-{self.watermark}",
            watermark=self.watermark,
            created_at=time.time(),
            events=self.events,
            n_users=self.n_users,
            n_items=self.n_items,
            n_events=len(rows),
        )
        # A hybrid is measured with the catalogue's content, as it is trained.
        content = read_item_content(store, self.n_items) if config.name == "hybrid" else None
        self.holdout = Holdout.of(snapshot, content)
        self.train = ~self.holdout.valid
        valid = self.holdout.valid
        self.heldout = sp.csr_matrix(
            (
                np.ones(int(valid.sum()), np.float32),
                (self.events.user_idx[valid], self.events.item_idx[valid]),
            ),
            shape=(self.n_users, self.n_items),
        )
        self.heldout.sum_duplicates()
        self.eval_users = np.flatnonzero(self.heldout.getnnz(axis=1))
        """Users with held-out events: every score is an array over (a subset of) them."""

    def matrix(self, mask: np.ndarray) -> sp.csr_matrix:
        """The training matrix of the events selected by ``mask`` (the config's weighting)."""
        ev = self.events
        return build_matrix(
            ev.user_idx[mask],
            ev.item_idx[mask],
            ev.weight[mask],
            ev.timestamp[mask],
            n_users=self.n_users,
            n_items=self.n_items,
            **self.config.matrix,
        )

    def ndcg(
        self, fit_mask: np.ndarray, users: np.ndarray, input_mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-user NDCG@10 on the holdout for ``users``, of the configuration fitted on the
        events in ``fit_mask``; lists are made from the users' rows of ``input_mask`` (default:
        the fitted events), whose items are excluded as consumed."""
        fit = self.matrix(fit_mask & self.train)
        rows = fit if input_mask is None else self.matrix(input_mask & self.train)
        model = create(self.config.name, content=self.holdout.content, **self.config.params)
        model.fit(fit)
        user_rows = rows[users]
        ids, _ = model.recommend(user_rows, K, exclude=(user_rows > 0).astype(np.float32))
        return per_user_ndcg(ids, self.heldout[users], K)

    def train_users(self, mask: np.ndarray) -> np.ndarray:
        """Boolean per user: has at least one training event within ``mask``."""
        ev = self.events
        keep = mask & self.train
        return np.bincount(ev.user_idx[keep], minlength=self.n_users) > 0


def per_user_ndcg(recommended: np.ndarray, heldout: sp.csr_matrix, k: int) -> np.ndarray:
    """NDCG@k of each row (binary relevance, log2 discount), as ``ranking.ndcg_at_k`` averages."""
    hit = hits(recommended, heldout, k)
    n_rel = np.diff(sp.csr_matrix(heldout).indptr)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = (hit * discount[: hit.shape[1]]).sum(axis=1)
    ideal = np.concatenate([[0.0], np.cumsum(discount)])[np.minimum(n_rel, k)]
    result: np.ndarray = dcg / np.maximum(ideal, 1e-12)
    return result


def resample_weights(n: int, replicates: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights over ``n`` users: row ``b`` counts how often each user was drawn,
    divided by ``n``, so ``weights @ values`` are the replicates' means."""
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=replicates)
    weights: np.ndarray = counts / float(n)
    return weights


def interval(replicates: np.ndarray) -> tuple[float, float]:
    """The percentile bootstrap interval at :data:`CONFIDENCE`."""
    tail = (1.0 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """``{"value", "low", "high"}`` of the mean of per-user ``values`` (bootstrap over users)."""
    return {
        "value": float(values.mean()),
        **dict(zip(("low", "high"), interval(weights @ values), strict=True)),
    }
