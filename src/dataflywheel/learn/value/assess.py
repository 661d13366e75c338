"""The whole measure: learning curves, the next doubling, value by slice, coverage, advice.

Bounded in time: the full-data fit and the time curve come first (the doubling needs them),
then the event types, the curve by users and the segments; whatever the budget leaves out is
named in ``skipped`` and the document says ``"complete": false``.
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
) -> dict[str, Any]:
    """Measure the value of the store's data for the champion's configuration."""
    check_budget(budget)
    if not fractions or any(not 0 < f <= 1 for f in fractions):
        raise ValidationError("fractions must lie in (0, 1]", field="fractions")
    started = time.monotonic()
    deadline = started + budget
    seed = (store.settings.seed or 0) if seed is None else seed
    config = Config.of(registry)
    data = ValueData(store, config)
    weights = resample_weights(len(data.eval_users), replicates, np.random.default_rng([seed, 3]))
    full = data.ndcg(data.train, data.eval_users)
    shares = tuple(sorted(set(fractions) | {1.0}))
    by_time, time_complete = curves.measure(data, "time", shares, deadline, seed, full)
    doubling = curves.next_doubling(by_time, weights)
    slices, skipped, slices_complete = value_by_slice(data, full, deadline, seed, replicates)
    by_users, users_complete = curves.measure(data, "users", shares, deadline, seed, full)
    measured_time = set(by_time.fractions)
    measured_users = set(by_users.fractions)
    skipped += [f"curve by time at {f}: over budget" for f in shares if f not in measured_time]
    skipped += [f"curve by users at {f}: over budget" for f in shares if f not in measured_users]
    shape = curves.diminishing(by_time, weights, doubling)
    cover = coverage(data)
    return {
        "watermark": data.watermark,
        "model": {**config.public(), "version": config.version},
        "metric": f"ndcg@{K}",
        "confidence": CONFIDENCE,
        "holdout_users": len(data.eval_users),
        "train_events": int(data.train.sum()),
        "curve": curves.points(by_time, weights),
        "curve_by_users": curves.points(by_users, weights),
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
