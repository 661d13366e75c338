"""The whole measure: learning curves, the next doubling, value by slice, coverage, advice.

Bounded in time: the full-data fit and the curve by users come first (the doubling is fitted
on it), then the slices (event types, strong signals, segments) and the curve by time;
whatever the budget leaves out is named in ``skipped`` and the document says
``"complete": false``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dataflywheel.errors import ValidationError
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.value import curve as curves
from dataflywheel.learn.value.advice import advise, coverage
from dataflywheel.learn.value.data import CONFIDENCE, Config, K, ValueData, resample_weights
from dataflywheel.learn.value.slices import value_by_slice
from dataflywheel.store.store import Store

REPLICATES = 1000
MAX_BUDGET = 86_400.0


def check_budget(budget: float) -> None:
    if not 0 < budget <= MAX_BUDGET:
        raise ValidationError(
            f"must be positive and at most {MAX_BUDGET:.0f} seconds", field="budget"
        )


def assess(
    store: Store,
    registry: Registry,
    *,
    budget: float = 120.0,
    seed: int | None = None,
    fractions: tuple[float, ...] = curves.FRACTIONS,
    replicates: int = REPLICATES,
    upto: int | None = None,
    config: Config | None = None,
) -> dict[str, Any]:
    """Measure the value of the store's data (the events with ``id <= upto``, default all) for
    ``config`` (default: the champion's configuration)."""
    check_budget(budget)
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValidationError("fractions must lie in (0, 1]", field="fractions")
    started = time.monotonic()
    deadline = started + budget
    seed = (store.settings.seed or 0) if seed is None else seed
    config = Config.of(registry) if config is None else config
    data = ValueData(store, config, upto)
    weights = resample_weights(len(data.eval_users), replicates, np.random.default_rng([seed, 3]))
    full = data.ndcg(data.train, data.eval_users)
    shares = tuple(sorted(set(fractions) | {1.0}))
    by_users, users_complete = curves.measure(data, "users", shares, deadline, seed, full)
    doubling = curves.next_doubling(by_users, weights, seed)
    slices, skipped, slices_complete = value_by_slice(data, full, deadline, seed, replicates)
    by_time, time_complete = curves.measure(data, "time", shares, deadline, seed, full)
    for curve in (by_users, by_time):
        skipped += [
            f"curve by {curve.by} at {f}: over budget" for f in shares if f not in curve.fractions
        ]
    shape = curves.diminishing(by_users, weights, doubling)
    cover = coverage(data)
    return {
        "watermark": data.watermark,
        "model": {**config.public(), "version": config.version},
        "metric": f"ndcg@{K}",
        "confidence": CONFIDENCE,
        "holdout_users": len(data.eval_users),
        "train_events": int(data.train.sum()),
        "curve_basis": "users",
        "curve": curves.points(by_users, weights),
        "curve_by_time": curves.points(by_time, weights),
        "next_doubling": doubling,
        "diminishing": shape,
        "slices": slices,
        "coverage": cover,
        "advice": advise(doubling, shape, slices, cover),
        "complete": time_complete and users_complete and slices_complete,
        "skipped": skipped,
        "seconds": round(time.monotonic() - started, 3),
        "computed_at": time.time(),
    }
