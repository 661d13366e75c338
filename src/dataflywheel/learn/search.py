"""Automatic model selection: seeded TPE over model type, hyperparameters and recency weighting.

The caller (the trainer reading the event store) passes raw event arrays and a validation mask;
each trial rebuilds the matrix with its recency settings, fits on the training part and is scored
on the validation part. When the items have content vectors, the hybrid (a collaborative model
blended with content) is one more model type: TPE picks its collaborative part and that part's
parameters, and each such trial scores a grid of content weights over one fit of that part. The
winner is refit on all events within the same time budget. A trial that raises or scores NaN is
logged and skipped (``SearchResult.failed``): one configuration the data breaks must not stop
the search, nor the background loop that runs it.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import scipy.sparse as sp

from dataflywheel.errors import TrainingError, ValidationError
from dataflywheel.evaluation.ranking import ranking_metrics
from dataflywheel.evaluation.splits import per_user_temporal
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import MODELS, Hybrid, Recommender, create
from dataflywheel.learn.models.ease import estimated_fit_seconds

__all__ = [
    "DEFAULT_MODELS",
    "EASE_KEEP",
    "HYBRID_BASES",
    "HYBRID_WEIGHTS",
    "SearchResult",
    "search",
    "suggest_params",
]

log = logging.getLogger(__name__)

DEFAULT_MODELS = ["ease", "rp3beta", "itemknn", "ials", "bpr", "popularity"]
"""Tried on every catalogue; the hybrid is added when some item has content."""
HYBRID_BASES = ("ease", "rp3beta", "itemknn", "ials")
"""Collaborative parts the search blends with content (BPR and popularity trail them)."""
HYBRID_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7)
"""Content weights one hybrid trial scores (both parts are scored once, so a grid is cheap); a
trial whose best weight is 0 is recorded as its collaborative part alone."""
EASE_KEEP = 200
"""Weights kept per item by the searched EASE: within ~2% of exact EASE's NDCG on MovieLens and
an order of magnitude faster to serve (benchmarks/results/quality_movielens.md)."""
RECENCY_WARM_START = {
    "model": "ease",
    "ease.l2": 400.0,
    "ease.fit_binary": True,
    "recency": True,
    "recent_half_life": 3.0,
    "recent_floor": 0.05,
}
"""A first guess worth trying early: co-occurrence EASE queried with the user's latest events
weighted up (found on a MovieLens validation split; the search moves away if it loses)."""


@dataclass
class SearchResult:
    """The refit winner, how to build its input rows, and the evidence for choosing it."""

    model: Recommender
    name: str
    params: dict[str, Any]
    matrix_params: dict[str, Any]
    metrics: dict[str, float]
    leaderboard: list[dict[str, Any]] = field(default_factory=list)
    incumbent: dict[str, Any] | None = None
    """The incumbent configuration's row of the leaderboard, when one was given."""
    failed: list[dict[str, Any]] = field(default_factory=list)
    """Skipped trials and refits: ``trial``, ``name``, ``params``, ``matrix_params``, ``error``."""


def suggest_params(
    trial: optuna.trial.BaseTrial, name: str, bases: Sequence[str] = HYBRID_BASES
) -> dict[str, Any]:
    """The hyperparameter space of one model type, sampled from an optuna trial; a hybrid's
    collaborative part is one of ``bases``, with that model's own space (its content weight is
    chosen by scoring :data:`HYBRID_WEIGHTS`)."""
    if name == "hybrid":
        base = trial.suggest_categorical("hybrid.base", list(bases))
        return {"base": base, "base_params": suggest_params(trial, base)}
    if name == "ease":
        return {
            "l2": trial.suggest_float("ease.l2", 10.0, 3000.0, log=True),
            "fit_binary": trial.suggest_categorical("ease.fit_binary", [True, False]),
            "keep": EASE_KEEP,
        }
    if name == "itemknn":
        return {
            "neighbours": trial.suggest_int("itemknn.neighbours", 10, 500, log=True),
            "shrink": trial.suggest_float("itemknn.shrink", 0.0, 100.0),
        }
    if name == "rp3beta":
        return {
            "alpha": trial.suggest_float("rp3beta.alpha", 0.3, 1.5),
            "beta": trial.suggest_float("rp3beta.beta", 0.0, 1.0),
            "neighbours": trial.suggest_int("rp3beta.neighbours", 20, 500, log=True),
        }
    if name == "ials":
        return {
            "factors": trial.suggest_categorical("ials.factors", [32, 64, 128]),
            "regularization": trial.suggest_float("ials.regularization", 1e-3, 10.0, log=True),
            "alpha": trial.suggest_float("ials.alpha", 0.5, 50.0, log=True),
        }
    if name == "bpr":
        return {
            "factors": trial.suggest_categorical("bpr.factors", [32, 64, 128]),
            "learning_rate": trial.suggest_float("bpr.learning_rate", 0.005, 0.1, log=True),
            "regularization": trial.suggest_float("bpr.regularization", 1e-4, 0.1, log=True),
        }
    return {}


def _suggest_matrix(trial: optuna.trial.BaseTrial) -> dict[str, Any]:
    if not trial.suggest_categorical("recency", [True, False]):
        return {}
    return {
        "recent_half_life": trial.suggest_float("recent_half_life", 1.0, 200.0, log=True),
        "recent_floor": trial.suggest_float("recent_floor", 0.005, 0.5, log=True),
    }


@dataclass
class _Events:
    user_idx: np.ndarray
    item_idx: np.ndarray
    weight: np.ndarray
    timestamp: np.ndarray
    n_users: int
    n_items: int

    def matrix(self, mask: np.ndarray | None, matrix_params: dict[str, Any]) -> sp.csr_matrix:
        pick = slice(None) if mask is None else mask
        return build_matrix(
            self.user_idx[pick],
            self.item_idx[pick],
            self.weight[pick],
            self.timestamp[pick],
            n_users=self.n_users,
            n_items=self.n_items,
            **matrix_params,
        )


def _depends_on_weights(name: str, params: dict[str, Any]) -> bool:
    return not (name == "popularity" or (name == "ease" and params.get("fit_binary")))


def search(
    user_idx: np.ndarray,
    item_idx: np.ndarray,
    weight: np.ndarray,
    timestamp: np.ndarray,
    *,
    n_users: int,
    n_items: int,
    budget_seconds: float,
    valid_mask: np.ndarray | None = None,
    models: list[str] | None = None,
    k: int = 10,
    seed: int = 0,
    max_trials: int | None = None,
    incumbent: tuple[str, dict[str, Any], dict[str, Any]] | None = None,
    content: sp.spmatrix | None = None,
) -> SearchResult:
    """Pick the model, hyperparameters and recency weighting with the best validation NDCG@k.

    ``valid_mask`` marks validation events (default: each user's last 20% by time). No new
    trial starts once the slowest trial so far would overrun ``budget_seconds`` (one is always
    scored), or after ``max_trials`` trials (which makes the result independent of the
    machine's speed).
    ``incumbent`` (name, model parameters, matrix parameters), usually the serving model's
    configuration, is scored first, outside the trial count, and can win. ``content``: the
    items' content vectors by dense id (:func:`~dataflywheel.learn.item_content.content_vectors`);
    with any, the hybrid is searched too (``models`` None), and it can be asked for.
    """
    if budget_seconds <= 0:
        raise ValidationError("budget_seconds must be positive", field="budget_seconds")
    if k <= 0:
        raise ValidationError("k must be positive", field="k")
    vectors = None if content is None else sp.csr_matrix(content, dtype=np.float32)
    described = vectors is not None and vectors.nnz > 0
    names = list(DEFAULT_MODELS if models is None else models)
    if models is None and described:
        names.append("hybrid")
    unknown = sorted(set(names) - set(MODELS))
    if not names or unknown:
        raise ValidationError(f"unknown or empty model list: {unknown}", field="models")
    if "hybrid" in names and not described:
        raise ValidationError(
            "the hybrid model needs item metadata (categories or attributes); no item has any",
            field="models",
        )
    bases = [name for name in HYBRID_BASES if name in names] or list(HYBRID_BASES)
    events = _Events(
        np.asarray(user_idx, dtype=np.int64),
        np.asarray(item_idx, dtype=np.int64),
        np.asarray(weight, dtype=np.float64),
        np.asarray(timestamp, dtype=np.float64),
        n_users,
        n_items,
    )
    if valid_mask is None:
        valid_mask = per_user_temporal(events.user_idx, events.item_idx, events.timestamp)[1]
    valid = np.asarray(valid_mask, dtype=bool)
    if valid.shape != events.user_idx.shape or not valid.any():
        raise ValidationError("valid_mask must select some events", field="valid_mask")
    started = time.monotonic()
    heldout = sp.csr_matrix(
        (
            np.ones(int(valid.sum()), dtype=np.float32),
            (events.user_idx[valid], events.item_idx[valid]),
        ),
        shape=(n_users, n_items),
    )
    heldout.sum_duplicates()
    users = np.flatnonzero(heldout.getnnz(axis=1))
    train_binary = events.matrix(~valid, {})
    # A dense EASE fit that alone would overrun the budget is never started (the budget is
    # only checked between trials); asked for on its own, it runs regardless.
    ease_seconds = 0.0
    wants_ease = "ease" in names or ("hybrid" in names and "ease" in bases)
    if wants_ease and names != ["ease"]:
        ease_seconds = estimated_fit_seconds(int(np.count_nonzero(train_binary.getnnz(axis=0))))
    too_slow_for_ease = ease_seconds > budget_seconds
    if too_slow_for_ease:
        names = [name for name in names if name != "ease"]
        bases = [name for name in bases if name != "ease"]
        if not bases:
            names = [name for name in names if name != "hybrid"]
        if not names:
            raise TrainingError(f"one EASE fit would take {ease_seconds:.0f} s, over the budget")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for name in names:
        if name != "hybrid":
            study.enqueue_trial({"model": name, "recency": False})
    if "ease" in names:
        study.enqueue_trial(RECENCY_WARM_START)
    if "hybrid" in names:
        # Content blended into the best first guess, whose collaborative fit is already made.
        first = RECENCY_WARM_START if "ease" in bases else {"recency": False}
        study.enqueue_trial({**first, "model": "hybrid", "hybrid.base": bases[0]})
    fitted: dict[str, tuple[Recommender, float]] = {}
    leaderboard: list[dict[str, Any]] = []

    def fit(
        name: str, params: dict[str, Any], matrix_params: dict[str, Any], train: sp.csr_matrix
    ) -> tuple[Recommender, float]:
        """The configuration fitted on the training part (once per distinct configuration)."""
        key = json.dumps(
            [name, params, matrix_params if _depends_on_weights(name, params) else None],
            sort_keys=True,
        )
        if key not in fitted:
            fit_start = time.monotonic()
            fitted[key] = (create(name, **params).fit(train), time.monotonic() - fit_start)
        return fitted[key]

    def evaluate(
        name: str, params: dict[str, Any], matrix_params: dict[str, Any]
    ) -> dict[str, Any]:
        """Fit on the training part and score it; a hybrid without a content weight scores
        each of :data:`HYBRID_WEIGHTS` and keeps the best."""
        train = events.matrix(~valid, matrix_params)
        rows, seen = train[users], train_binary[users]
        if name != "hybrid":
            model, fit_seconds = fit(name, params, matrix_params, train)
            ids, _ = model.recommend(rows, k, exclude=seen)
            metrics = ranking_metrics(ids, heldout[users], train_binary, k)
        else:
            base, fit_seconds = fit(params["base"], params["base_params"], matrix_params, train)
            weights: Sequence[float] = (
                [params["content_weight"]] if "content_weight" in params else HYBRID_WEIGHTS
            )
            blends = Hybrid.around(base, vectors, 0.0).recommend_blends(
                rows, k, weights, exclude=seen
            )
            scored = [ranking_metrics(ids, heldout[users], train_binary, k) for ids in blends]
            best = max(range(len(weights)), key=lambda n: scored[n][f"ndcg@{k}"])
            metrics, weight = scored[best], float(weights[best])
            if weight > 0:
                params = {**params, "content_weight": weight}
            else:
                name, params = params["base"], params["base_params"]
        return {
            "name": name,
            "params": params,
            "matrix_params": matrix_params,
            **metrics,
            "fit_seconds": fit_seconds,
        }

    failed: list[dict[str, Any]] = []

    def skip(trial: int | str, name: str, params: Any, matrix_params: Any, error: str) -> None:
        log.warning("model search: skipped %s (trial %s): %s", name, trial, error)
        failed.append(
            {
                "trial": trial,
                "name": name,
                "params": params,
                "matrix_params": matrix_params,
                "error": error,
            }
        )

    def attempt(
        trial: int | str, name: str, params: dict[str, Any], matrix_params: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The trial's leaderboard row, or None (recorded in ``failed``) when it failed."""
        try:
            row = evaluate(name, params, matrix_params)
        except Exception as exc:  # any model's failure: the next configuration may work
            skip(trial, name, params, matrix_params, f"{type(exc).__name__}: {exc}")
            return None
        if not math.isfinite(row[f"ndcg@{k}"]):
            skip(trial, name, params, matrix_params, f"ndcg@{k} is {row[f'ndcg@{k}']}")
            return None
        row = {"trial": trial, **row}
        leaderboard.append(row)
        return row

    if too_slow_for_ease:
        skip("planned", "ease", {}, {}, f"estimated {ease_seconds:.0f} s for one fit")
    slowest = 0.0
    incumbent_metrics = None
    if incumbent is not None:
        # A hybrid's collaborative part is the fit that may be too slow.
        slow_part = incumbent[1].get("base") if incumbent[0] == "hybrid" else incumbent[0]
    if incumbent is not None and not (too_slow_for_ease and slow_part == "ease"):
        # The serving configuration refit on today's data is always a contender, so the
        # winner is never worse than it on this split (and the gate need not refit it).
        trial_start = time.monotonic()
        found = attempt("incumbent", *incumbent)
        if found is not None:
            incumbent_metrics = {key: v for key, v in found.items() if key != "trial"}
        slowest = time.monotonic() - trial_start
    trials = 0
    # One configuration is always scored: on a busy machine the set-up alone (splitting,
    # the EASE speed probe) can use up a small budget, and a search must still give a model.
    while (max_trials is None or trials < max_trials) and (
        (trials == 0 and incumbent_metrics is None)
        or time.monotonic() - started + slowest < budget_seconds
    ):
        trial = study.ask()
        trial_start = time.monotonic()
        name = trial.suggest_categorical("model", names)
        params = suggest_params(trial, name, bases)
        row = attempt(trial.number, name, params, _suggest_matrix(trial))
        if row is None:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            study.tell(trial, row[f"ndcg@{k}"])
        trials += 1
        slowest = max(slowest, time.monotonic() - trial_start)
    final, best = _refit_best(events, leaderboard, k, skip, vectors)
    if final is None:
        if failed:
            raise TrainingError(
                f"every model configuration failed; first: {failed[0]['name']}: "
                f"{failed[0]['error']}",
                failed=failed[:5],
            )
        raise TrainingError("the time budget was too small to evaluate any model")
    return SearchResult(
        model=final,
        name=best["name"],
        params=best["params"],
        matrix_params=best["matrix_params"],
        metrics={
            key: best[key]
            for key in (f"recall@{k}", f"ndcg@{k}", f"map@{k}", "coverage", "novelty")
        },
        leaderboard=leaderboard,
        incumbent=incumbent_metrics,
        failed=failed,
    )


def _refit_best(
    events: _Events,
    leaderboard: list[dict[str, Any]],
    k: int,
    skip: Callable[..., None],
    content: sp.csr_matrix | None,
) -> tuple[Recommender | None, dict[str, Any]]:
    """The best configuration refit on every event; the next best when a refit fails."""
    for row in sorted(leaderboard, key=lambda row: -row[f"ndcg@{k}"]):
        try:
            model = create(row["name"], content=content, **row["params"])
            return model.fit(events.matrix(None, row["matrix_params"])), row
        except Exception as exc:  # the refit sees more data than the trial did
            skip(
                "refit",
                row["name"],
                row["params"],
                row["matrix_params"],
                f"{type(exc).__name__}: {exc}",
            )
    return None, {}
