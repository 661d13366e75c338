"""The learning curve: quality against the amount of training data, and its next doubling.

Two ways to have less data: ``by users`` keeps every event of a random share of users (fewer
users, each complete; lists are still made from every user's own history), ``by time`` keeps
the oldest share of the training events (the store as it was earlier). Each share is scored on
the same holdout, per user, so the curve's points are paired. The doubling is fitted on the
curve by users: the curve by time mixes the amount of data with its age (old data misses the
newest users and items), so it rises far more steeply than quality does as a store grows
(benchmarks/bench_value.py measures both against the simulator's truth).

The fit is ``ndcg ≈ a − b·(n/N)^−c`` (a saturating power law; ``c → 0`` is the log-linear
``a + b·log2 n``, kept as a candidate of its own), least squares over the points with ``c``
chosen on a grid. The gain of the next doubling is ``b·(1 − 2^−c)`` (``b`` per doubling for the
log-linear form); its interval refits every bootstrap replicate of the users.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from dataflywheel.learn.value.data import ValueData, interval, mean_interval

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
EXPONENTS = np.r_[0.0, np.geomspace(0.05, 3.0, 48)]
"""Candidate exponents ``c``; 0 stands for the log-linear form."""
FLAT_SHARE = 0.02
FLAT_FLOOR = 0.002
"""A doubling worth less than max(FLAT_FLOOR, FLAT_SHARE × NDCG) is a flat stretch of curve."""


@dataclass
class Curve:
    """Per-user NDCG (rows: shares, columns: ``data.eval_users``) and the events behind each."""

    by: str
    fractions: list[float]
    events: list[int]
    scores: list[np.ndarray]


def time_mask(data: ValueData, fraction: float) -> np.ndarray:
    """The oldest ``fraction`` of the training events (ties in time by store order)."""
    train = np.flatnonzero(data.train)
    order = train[np.argsort(data.events.timestamp[train], kind="stable")]
    mask = np.zeros(len(data.events), dtype=bool)
    mask[order[: int(np.ceil(fraction * len(order)))]] = True
    return mask


def user_mask(data: ValueData, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Every training event of a random ``fraction`` of the users who have any."""
    users = np.flatnonzero(data.train_users(data.train))
    chosen = np.zeros(data.n_users, dtype=bool)
    chosen[rng.permutation(users)[: int(np.ceil(fraction * len(users)))]] = True
    mask: np.ndarray = chosen[data.events.user_idx] & data.train
    return mask


def measure(
    data: ValueData,
    by: str,
    fractions: tuple[float, ...],
    deadline: float,
    seed: int,
    full: np.ndarray | None = None,
) -> tuple[Curve, bool]:
    """Score each share, largest first (the full data may be given), until ``deadline``;
    returns the curve in increasing order and whether every share was measured."""
    rng = np.random.default_rng([seed, 7])
    measured: dict[float, tuple[int, np.ndarray]] = {}
    complete = True
    for fraction in sorted(fractions, reverse=True):
        if fraction >= 1.0 and full is not None:
            measured[fraction] = (int(data.train.sum()), full)
            continue
        if time.monotonic() > deadline:
            complete = False
            break
        if by == "time":
            mask = time_mask(data, fraction)
            scores = data.ndcg(mask, data.eval_users)
        else:
            mask = user_mask(data, fraction, rng)
            scores = data.ndcg(mask, data.eval_users, input_mask=data.train)
        measured[fraction] = (int(mask.sum()), scores)
    order = sorted(measured)
    curve = Curve(by, order, [measured[f][0] for f in order], [measured[f][1] for f in order])
    return curve, complete


def points(curve: Curve, weights: np.ndarray) -> list[dict[str, Any]]:
    """The contract's curve entries: fraction, events, ndcg with its interval."""
    rows = []
    for fraction, events, scores in zip(curve.fractions, curve.events, curve.scores, strict=True):
        summary = mean_interval(scores, weights)
        rows.append(
            {
                "fraction": fraction,
                "events": events,
                "ndcg": summary["value"],
                "low": summary["low"],
                "high": summary["high"],
            }
        )
    return rows


@dataclass
class Fit:
    """Per replicate: ``ndcg ≈ a + b·x(n/N)`` with ``x = −(n/N)^−c`` (``log2`` when c = 0)."""

    a: np.ndarray
    b: np.ndarray
    c: np.ndarray
    reference: float

    def predict(self, n: float) -> np.ndarray:
        result: np.ndarray = self.a + self.b * _x(n / self.reference, self.c)
        return result


def _x(u: float | np.ndarray, c: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.where(c == 0, np.log2(u), -(np.asarray(u, dtype=np.float64) ** -c))


def fit(n: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares fit of every row of ``y`` (replicates × points at sizes ``n``)."""
    reference = float(n[-1])
    u = n / reference
    rows = y.shape[0]
    best = np.full(rows, np.inf)
    a, b, c = np.zeros(rows), np.zeros(rows), np.zeros(rows)
    for exponent in EXPONENTS:
        x = np.log2(u) if exponent == 0 else -(u**-exponent)
        design = np.column_stack([np.ones_like(x), x])
        coef = y @ np.linalg.pinv(design).T
        sse = ((y - coef @ design.T) ** 2).sum(axis=1)
        better = sse < best - 1e-15
        best[better] = sse[better]
        a[better], b[better], c[better] = coef[better, 0], coef[better, 1], exponent
    return Fit(a, b, c, reference)


def gain_between(
    curve: Curve, weights: np.ndarray, n_from: float, n_to: float, seed: int = 0
) -> dict[str, Any]:
    """Gain of NDCG@10 the fitted curve expects from ``n_from`` to ``n_to`` training events.

    ``low``/``high``: the bootstrap interval of the expected gain (each replicate of the users
    refitted). ``measured_low``/``measured_high``: where a gain measured offline at both sizes
    should fall, adding the holdout noise of two independent measurements (each with the
    standard error of today's mean NDCG) to the fit's uncertainty.
    """
    n = np.asarray(curve.events, dtype=np.float64)
    if len(n) < 3:
        return {"gain": None, "low": None, "high": None, "reason": "fewer than 3 curve points"}
    table = np.vstack(curve.scores)  # points × users
    point = fit(n, table.mean(axis=1)[None, :])
    replicates = fit(n, weights @ table.T)
    gains = replicates.predict(n_to) - replicates.predict(n_from)
    low, high = interval(gains)
    noise = np.sqrt(2.0) * float(np.std(weights @ curve.scores[-1]))
    drawn = gains + np.random.default_rng([seed, 13]).normal(0.0, noise, len(gains))
    measured_low, measured_high = interval(drawn)
    return {
        "gain": float((point.predict(n_to) - point.predict(n_from))[0]),
        "low": low,
        "high": high,
        "measured_low": measured_low,
        "measured_high": measured_high,
        "from_events": int(n_from),
        "to_events": int(n_to),
        "exponent": float(point.c[0]),
        "form": "log-linear" if point.c[0] == 0 else "power law",
    }


def next_doubling(curve: Curve, weights: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """Gain of NDCG@10 expected from twice the data, with its intervals."""
    total = float(curve.events[-1]) if curve.events else 0.0
    return gain_between(curve, weights, total, 2 * total, seed)


def diminishing(curve: Curve, weights: np.ndarray, doubling: dict[str, Any]) -> dict[str, Any]:
    """The gain of each step between measured shares (paired per user) and where the curve
    goes flat."""
    full = float(curve.scores[-1].mean()) if curve.scores else 0.0
    threshold = max(FLAT_FLOOR, FLAT_SHARE * full)
    steps = []
    for j in range(1, len(curve.fractions)):
        summary = mean_interval(curve.scores[j] - curve.scores[j - 1], weights)
        steps.append(
            {
                "from": curve.fractions[j - 1],
                "to": curve.fractions[j],
                "gain": summary["value"],
                "low": summary["low"],
                "high": summary["high"],
            }
        )
    flat_from = None
    for step in reversed(steps):
        if step["gain"] >= threshold:
            break
        flat_from = step["from"]
    high = doubling.get("high")
    return {
        "threshold": threshold,
        "steps": steps,
        "flat_from": flat_from,
        "flat": high is not None and high < threshold,
    }
