"""The loop's reading of shadow mode: how a shadow candidate would have done on shared traffic.

Serving stores each shadow's list beside the champion's (:mod:`dataflywheel.serve.shadow`); the
gates call :func:`shadow_report` to join those lists with the logged propensities and clicks for
an off-policy estimate of the candidate.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.evaluation.ope import off_policy
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Store

MAX_ROUNDS = 5_000


def shadow_report(
    store: Store, version: str, since: float, *, min_matches: int = 20
) -> dict[str, Any]:
    """Agreement with the champion and the off-policy value of ``version`` on shared traffic.

    Each (list, position) is one round: reward 1 when the user answered that item of that
    list with positive feedback, the logged propensity of that item at that position, and the
    shadow's deterministic choice for that position. IPW/SNIPW then estimate the shadow's
    reward per position, beside the champion's observed (on-policy) reward per position.
    """
    s, i = shadow_results.c, schema.impressions.c
    with store.read() as conn:
        rows = conn.execute(
            select(
                s.recommendation_id, s.item_ids, s.overlap, s.rank_corr, i.item_ids, i.propensities
            )
            .select_from(
                shadow_results.join(schema.impressions, s.recommendation_id == i.recommendation_id)
            )
            .where(s.version == version, s.ts >= since, i.policy != "team_draft")
            .order_by(s.id.desc())
            .limit(MAX_ROUNDS)
        ).all()
    report: dict[str, Any] = {
        "version": version,
        "requests": len(rows),
        "overlap": float(np.mean([r[2] for r in rows])) if rows else None,
        "rank_corr": _mean([r[3] for r in rows if r[3] is not None]),
        "matches": 0,
        "champion_value": None,
        "ope": None,
    }
    if not rows:
        return report
    positive = _positive_feedback(store, [r[0] for r in rows])
    reward, pscore, match = [], [], []
    for rec, shadow_items, _, _, served, propensities in rows:
        for position, (item, p) in enumerate(zip(served, propensities, strict=True)):
            reward.append(1.0 if (rec, item) in positive else 0.0)
            pscore.append(p)
            match.append(position < len(shadow_items) and shadow_items[position] == item)
    matches = np.asarray(match, dtype=np.float64)
    report["matches"] = int(matches.sum())
    report["champion_value"] = float(np.mean(reward))
    if report["matches"] < min_matches:
        return report
    # Two actions per round, "the logged item" and "any other": IPW only needs the shadow's
    # probability of the logged action, so this is exact and stays small for any catalogue.
    action_dist = np.stack([matches, 1.0 - matches], axis=1)[:, :, None]
    estimates = off_policy(
        reward=np.asarray(reward),
        action=np.zeros(len(reward), dtype=np.int64),
        pscore=np.asarray(pscore),
        action_dist=action_dist,
        estimators=["ipw", "snipw"],
        random_state=0,
    )
    best = estimates["snipw"]
    report["ope"] = {
        "estimator": best.name,
        "value": best.value,
        "low": best.low,
        "high": best.high,
    }
    return report


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def _positive_feedback(store: Store, recommendation_ids: list[str]) -> set[tuple[str, str]]:
    """(recommendation_id, item_id) pairs that got feedback with a positive signal weight."""
    e, it = schema.events.c, schema.items.c
    positive_types = [t for t, s in store.settings.signals.items() if s.weight > 0]
    out: set[tuple[str, str]] = set()
    for start in range(0, len(recommendation_ids), 900):
        chunk = recommendation_ids[start : start + 900]
        with store.read() as conn:
            out.update(
                (rec, item)
                for rec, item in conn.execute(
                    select(e.recommendation_id, it.item_id)
                    .select_from(schema.events.join(schema.items, e.item_idx == it.idx))
                    .where(e.recommendation_id.in_(chunk), e.type.in_(positive_types))
                ).all()
            )
    return out
