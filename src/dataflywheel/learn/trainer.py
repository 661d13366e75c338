"""Training: snapshot → model search or fit → evaluation on a temporal holdout → registry.

A trainer is anything that reads a snapshot and registers an artifact, so it can run in the
server's loop, in ``flywheel train``, or (later) on another machine against the same store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataflywheel.errors import TrainingError, ValidationError
from dataflywheel.evaluation.ranking import ranking_metrics
from dataflywheel.evaluation.splits import per_user_temporal
from dataflywheel.learn.item_content import read_item_content
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import MODELS, Recommender, create
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.search import search
from dataflywheel.learn.snapshot import EventArrays, Snapshot, take_snapshot
from dataflywheel.store.store import Store

K = 10
MIN_EVENTS = 20
HOLDOUT_FRACTION = 0.2


@dataclass
class Holdout:
    """A per-user temporal split of a snapshot: each user's last 20% of events held out;
    ``content``: the items' content vectors, for the configurations that learn from them."""

    events: EventArrays
    valid: np.ndarray
    n_users: int
    n_items: int
    content: sp.csr_matrix | None = None

    @classmethod
    def of(cls, snapshot: Snapshot, content: sp.csr_matrix | None = None) -> Holdout:
        ev = snapshot.events
        _, valid = per_user_temporal(
            ev.user_idx, ev.item_idx, ev.timestamp, fraction=HOLDOUT_FRACTION
        )
        if not valid.any():
            raise TrainingError("no user has enough events for a holdout (need 5 per user)")
        return cls(ev, valid, snapshot.n_users, snapshot.n_items, content)

    @classmethod
    def from_store(cls, store: Store, now: float | None = None) -> Holdout:
        """Today's holdout of the store (its snapshot not recorded), with the catalogue's
        content, so that any registered configuration refits as it was trained."""
        snapshot = take_snapshot(store, now=now, record=False)
        return cls.of(snapshot, read_item_content(store, snapshot.n_items))

    def evaluate(
        self, name: str, params: dict[str, Any], matrix: dict[str, Any]
    ) -> dict[str, float]:
        """Fit the configuration on the training part and score it on the held-out part."""
        train = self.train_matrix(matrix)
        started = time.monotonic()
        model = create(name, content=self.content, **params).fit(train)
        fit_seconds = time.monotonic() - started
        return {**self.score(model, train), "fit_seconds": fit_seconds}

    def train_matrix(self, matrix: dict[str, Any] | None = None) -> sp.csr_matrix:
        """The training part's weighted matrix (``matrix``: build_matrix's recency options)."""
        ev, valid = self.events, self.valid
        return build_matrix(
            ev.user_idx[~valid],
            ev.item_idx[~valid],
            ev.weight[~valid],
            ev.timestamp[~valid],
            n_users=self.n_users,
            n_items=self.n_items,
            **(matrix or {}),
        )

    def score(self, model: Recommender, train: sp.csr_matrix) -> dict[str, float]:
        """Ranking metrics of a fitted model on the held-out part, each user folded in from
        their training row (a model fitted elsewhere, e.g. on Spark, is scored the same way)."""
        ev, valid = self.events, self.valid
        seen = (train > 0).astype(np.float32)
        heldout = sp.csr_matrix(
            (np.ones(int(valid.sum()), np.float32), (ev.user_idx[valid], ev.item_idx[valid])),
            shape=(self.n_users, self.n_items),
        )
        users = np.flatnonzero(heldout.getnnz(axis=1))
        ids, _ = model.recommend(train[users], K, exclude=seen[users])
        return ranking_metrics(ids, heldout[users], seen, K)


class Trainer:
    """Trains candidates from the store and registers them."""

    def __init__(self, store: Store, registry: Registry, artifacts: Path) -> None:
        self.store = store
        self.registry = registry
        self.artifacts = artifacts

    def train(
        self, model: str = "auto", budget: float = 60.0, *, now: float | None = None
    ) -> dict[str, Any]:
        """Snapshot the store, pick and fit a model, register it; the first becomes champion."""
        if model != "auto" and model not in MODELS:
            raise ValidationError(
                f"unknown model {model!r}; choose auto or one of {', '.join(MODELS)}", field="model"
            )
        if budget <= 0:
            raise ValidationError("budget must be positive", field="budget")
        now = time.time() if now is None else now
        snapshot = take_snapshot(self.store, now=now)
        if snapshot.n_events < MIN_EVENTS:
            raise TrainingError(
                f"only {snapshot.n_events} item events in the store; need {MIN_EVENTS} to train"
            )
        # The catalogue's content vectors (None: no item has metadata) for the hybrid.
        content = (
            read_item_content(self.store, snapshot.n_items) if model in ("auto", "hybrid") else None
        )
        holdout = Holdout.of(snapshot, content)
        ev = snapshot.events
        settings = self.store.settings
        champion = self.registry.champion()
        incumbent = None
        if model == "auto" and champion is not None:
            params = champion["params"]
            incumbent = (champion["name"], params["model"], params.get("matrix", {}))
        started = time.monotonic()
        result = search(
            ev.user_idx,
            ev.item_idx,
            ev.weight,
            ev.timestamp,
            n_users=snapshot.n_users,
            n_items=snapshot.n_items,
            budget_seconds=budget,
            valid_mask=holdout.valid,
            models=None if model == "auto" else [model],
            k=K,
            seed=settings.seed or 0,
            max_trials=settings.train_max_trials,
            incumbent=incumbent,
            content=content,
        )
        fit_seconds = time.monotonic() - started
        artifact = self.artifacts / f"{snapshot.id}-{result.name}"
        result.model.save(artifact)
        version = self.registry.register(
            name=result.name,
            params={"model": result.params, "matrix": result.matrix_params},
            metrics={
                **result.metrics,
                "holdout_users": int(np.unique(ev.user_idx[holdout.valid]).size),
                # Configurations the search skipped because they raised or scored NaN.
                **({"failed_trials": len(result.failed)} if result.failed else {}),
                **(
                    {}
                    if result.incumbent is None or champion is None
                    else {
                        "incumbent": {
                            "version": champion["version"],
                            f"ndcg@{K}": result.incumbent[f"ndcg@{K}"],
                        }
                    }
                ),
            },
            snapshot_id=snapshot.id,
            artifact=str(artifact),
            fit_seconds=fit_seconds,
            created_at=now,
        )
        if champion is None:
            version = self.registry.promote(version["version"], "first model", now)
        return version

    def leaderboard(self) -> list[dict[str, Any]]:
        """Every registered configuration refit and scored on today's holdout."""
        holdout = Holdout.from_store(self.store)
        rows = []
        for entry in self.registry.versions():
            metrics = holdout.evaluate(
                entry["name"], entry["params"]["model"], entry["params"]["matrix"]
            )
            rows.append(
                {
                    "version": entry["version"],
                    "name": entry["name"],
                    "status": entry["status"],
                    **metrics,
                }
            )
        return sorted(rows, key=lambda row: -row[f"ndcg@{K}"])
