"""Off-policy evaluation of a registered model version on the engine's own impression logs.

Every served list is an impression with the propensity of each item at its position; feedback
events carrying the same ``recommendation_id`` say which served items were engaged with. Each
(impression, position) is one logged round. The candidate is the deterministic top-k of the
model version for the same user at that time (its history strictly before the impression,
consumed items excluded as serving does), so its ``action_dist`` is one-hot per position. The
action space is the union of logged and candidate items: every other item has probability 0
under both policies, so leaving it out changes no estimate.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from dataflywheel.errors import ValidationError
from dataflywheel.evaluation.ope import off_policy
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import load_model
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import read_events
from dataflywheel.serve.exploration import deterministic_action_dist
from dataflywheel.store import schema
from dataflywheel.store.store import Store

Z95 = 1.959963984540054


@dataclass(frozen=True)
class LoggedRounds:
    """Open-Bandit-style arrays of the logged rounds and the candidate's ``action_dist``."""

    reward: NDArray[np.float64]
    action: NDArray[np.int64]
    pscore: NDArray[np.float64]
    position: NDArray[np.int64]
    action_dist: NDArray[np.float64]
    impressions: int
    served_by: dict[str, int]
    action_context: NDArray[np.float64] | None = None  # category one-hots per action


def _engaged(store: Store, recommendation_ids: list[str]) -> set[tuple[str, str]]:
    """(recommendation id, item id) pairs with a positive-signal event."""
    positive = [t for t, s in store.settings.signals.items() if s.weight > 0]
    e, i = schema.events.c, schema.items.c
    out: set[tuple[str, str]] = set()
    for start in range(0, len(recommendation_ids), 900):
        chunk = recommendation_ids[start : start + 900]
        query = (
            select(e.recommendation_id, i.item_id)
            .join(schema.items, i.idx == e.item_idx)
            .where(e.recommendation_id.in_(chunk), e.type.in_(positive))
        )
        with store.read() as conn:
            out.update((r, item) for r, item in conn.execute(query))
    return out


def logged_rounds(
    store: Store,
    registry: Registry,
    candidate: str,
    *,
    since: float | None = None,
    until: float | None = None,
) -> LoggedRounds:
    """Build the logged rounds of impressions in ``[since, until)`` and the candidate's
    deterministic top-k for each."""
    version = registry.get(candidate)
    model = load_model(Path(version["artifact"]))
    matrix_params = version["params"].get("matrix", {})
    imp = schema.impressions.c
    query = select(
        imp.recommendation_id,
        imp.user_idx,
        imp.ts,
        imp.model_version,
        imp.item_ids,
        imp.propensities,
    ).order_by(imp.ts)
    if since is not None:
        query = query.where(imp.ts >= since)
    if until is not None:
        query = query.where(imp.ts < until)
    with store.read() as conn:
        rows = [r for r in conn.execute(query).all() if r.item_ids]
    if not rows:
        raise ValidationError("no impressions to evaluate in this period", field="since")

    engaged = _engaged(store, [r.recommendation_id for r in rows])
    keys = sorted({item for r in rows for item in r.item_ids})
    dense = store.lookup_ids("items", keys)
    events, _ = read_events(store)
    by_user: dict[int, NDArray[np.int64]] = defaultdict(lambda: np.zeros(0, dtype=np.int64))
    order = np.argsort(events.user_idx, kind="stable")
    users, starts = np.unique(events.user_idx[order], return_index=True)
    for user, chunk in zip(users.tolist(), np.split(order, starts[1:]), strict=True):
        by_user[user] = chunk

    k = max(len(r.item_ids) for r in rows)
    space: dict[int, int] = {}  # dense item id (or -1: no item) -> action index

    def action_of(item: int) -> int:
        return space.setdefault(item, len(space))

    rankings, reward, action, pscore, position = [], [], [], [], []
    served_by: dict[str, int] = defaultdict(int)
    for r in rows:
        served_by[r.model_version or "popularity"] += 1
        top = _candidate_top(model, matrix_params, events, by_user.get(r.user_idx), r.ts, k)
        rankings.append([action_of(int(item)) for item in top])
        for j, (item, p) in enumerate(zip(r.item_ids, r.propensities, strict=True)):
            reward.append(1.0 if (r.recommendation_id, item) in engaged else 0.0)
            action.append(action_of(dense.get(item, -2 - keys.index(item))))
            pscore.append(float(p))
            position.append(j)
    per_impression = deterministic_action_dist(np.array(rankings), len(space))
    repeats = np.array([len(r.item_ids) for r in rows])
    return LoggedRounds(
        np.array(reward),
        np.array(action, dtype=np.int64),
        np.array(pscore),
        np.array(position, dtype=np.int64),
        np.repeat(per_impression, repeats, axis=0),
        len(rows),
        dict(served_by),
        _category_features(store, space),
    )


def _category_features(store: Store, space: dict[int, int]) -> NDArray[np.float64] | None:
    """One column per item category, 1 where the action's item has it; None without categories.

    The reward model then pools the few rounds of each item with those of its category.
    """
    known = [item for item in space if item >= 0]
    i = schema.items.c
    found: dict[int, list[str]] = {}
    for start in range(0, len(known), 900):
        query = select(i.idx, i.categories).where(i.idx.in_(known[start : start + 900]))
        with store.read() as conn:
            found.update((idx, list(cats or [])) for idx, cats in conn.execute(query))
    names = sorted({str(c) for cats in found.values() for c in cats})
    if not names:
        return None
    column = {name: j for j, name in enumerate(names)}
    features = np.zeros((len(space), len(names)))
    for item, cats in found.items():
        for c in cats:
            features[space[item], column[str(c)]] = 1.0
    return features


def _candidate_top(
    model: Any,
    matrix_params: dict[str, Any],
    events: Any,
    rows: NDArray[np.int64] | None,
    ts: float,
    k: int,
) -> list[int]:
    """The model's top ``k`` dense item ids for a user's history before ``ts`` (-1 pads)."""
    ids, _ = model.recommend(history_row(model, matrix_params, events, rows, ts), k)
    return [int(i) for i in ids[0]]


def history_row(
    model: Any,
    matrix_params: dict[str, Any],
    events: Any,
    rows: NDArray[np.int64] | None,
    ts: float,
) -> Any:
    """A user's model input row from their events ``rows`` before ``ts``, as the model was
    trained (its matrix parameters), over the items the model knows."""
    if rows is None or rows.size == 0:
        before = np.zeros(0, dtype=np.int64)
    else:
        before = rows[(events.timestamp[rows] < ts) & (events.item_idx[rows] < model.n_items)]
    return build_matrix(
        np.zeros(before.size, dtype=np.int64),
        events.item_idx[before],
        events.weight[before],
        events.timestamp[before],
        n_users=1,
        n_items=model.n_items,
        **matrix_params,
    )


def evaluate_candidate(
    store: Store,
    registry: Registry,
    candidate: str,
    *,
    since: float | None = None,
    until: float | None = None,
    random_state: int = 0,
) -> dict[str, Any]:
    """The candidate's estimated reward per served slot vs the logged on-policy reward."""
    logs = logged_rounds(store, registry, candidate, since=since, until=until)
    estimates = off_policy(
        reward=logs.reward,
        action=logs.action,
        pscore=logs.pscore,
        action_dist=logs.action_dist,
        position=logs.position,
        action_context=logs.action_context,
        random_state=random_state,
    )
    auto = estimates["auto"]
    mean = float(logs.reward.mean())
    spread = float(logs.reward.std(ddof=1)) if logs.reward.size > 1 else 0.0
    half = Z95 * spread / float(np.sqrt(logs.reward.size))
    return {
        "candidate": candidate,
        "impressions": logs.impressions,
        "rounds": int(logs.reward.size),
        "logged": {
            "served_by": logs.served_by,
            "value": mean,
            "low": mean - half,
            "high": mean + half,
        },
        "estimate": {
            "estimator": auto.name,
            "reason": auto.reason,
            "value": float(auto.value),
            "low": float(auto.low),
            "high": float(auto.high),
        },
        "lift": float(auto.value) - mean,
        "estimators": {
            name: {"value": float(e.value), "low": float(e.low), "high": float(e.high)}
            for name, e in estimates.items()
            if name != "auto"
        },
    }
