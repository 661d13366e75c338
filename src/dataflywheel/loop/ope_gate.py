"""The shadow gate's off-policy evidence: every position of every list a shadow scored.

Each served list is a unit: its items, their logged propensities, which of them got positive
feedback (by ``recommendation_id``), and the shadow's deterministic top-k for the same request.
:func:`dataflywheel.evaluation.slate.slate_off_policy` estimates the shadow's lift in positive
feedback per list over what was served; the verdict is ``pass`` (confidently not worse than the
margin), ``fail`` (confidently worse) or ``no evidence`` (too few effective positions, or an
interval across the margin), with how much more traffic, or how much ε, a verdict needs.

Lists served by :class:`dataflywheel.serve.exploration.ShadowExplore` (policy
``shadow_explore``) log the probability of the branch that chose them: a list the shadow chose
itself (``model_version`` = the shadow) counts at every position with weight one over that
probability, and the champion's lists count for nothing (whole-list IPS, exact by design).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.evaluation.slate import SlateEstimate, deterministic, slate_off_policy
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Store

DAY = 86_400.0
MAX_LISTS = 20_000
MIN_ESS = 30.0
# ε-greedy logs a ranked slot at 1 - ε and an explored one at ε / rest; ε < 0.5 tells them apart.
GREEDY = 0.5
AIMED = "shadow_explore"


def shadow_evidence(
    store: Store, version: str, since: float, now: float, *, margin: float, horizon: float
) -> dict[str, Any]:
    """Verdict and evidence for shadow ``version`` on lists served in ``[since, now]``;
    ``horizon`` (seconds from ``since``) is the deadline the ε advice aims at."""
    s, i = shadow_results.c, schema.impressions.c
    with store.read() as conn:
        rows = conn.execute(
            select(
                s.recommendation_id,
                s.item_ids,
                i.item_ids,
                i.propensities,
                i.policy,
                i.model_version,
            )
            .select_from(
                shadow_results.join(schema.impressions, s.recommendation_id == i.recommendation_id)
            )
            .where(s.version == version, s.ts >= since, s.ts <= now, i.policy != "team_draft")
            .order_by(s.id.desc())
            .limit(MAX_LISTS)
        ).all()
    rows = [r for r in rows if r[2]]
    if not rows:
        return {"verdict": "no evidence", "lists": 0, "reason": "no shadow traffic yet"}
    clicked = _positive(store, [r[0] for r in rows])
    n, k = len(rows), max(len(r[2]) for r in rows)
    codes: dict[str, int] = {}
    logged = np.full((n, k), -1)
    shadow = np.full((n, k), -2)
    reward, pscore = np.zeros((n, k)), np.ones((n, k))
    for row, (rec, ours, served, props, _, _) in enumerate(rows):
        for j, (item, p) in enumerate(zip(served, props, strict=True)):
            logged[row, j] = codes.setdefault(item, len(codes))
            pscore[row, j] = p
            reward[row, j] = (rec, item) in clicked
        for j, item in enumerate(ours[:k]):
            shadow[row, j] = codes.setdefault(item, len(codes))
    position, anywhere = deterministic(shadow, logged)
    aimed = np.array([r[4] == AIMED for r in rows])
    own = np.array([r[5] == version for r in rows])[:, None]
    position[aimed] = np.where(own & (logged >= 0), 1.0, 0.0)[aimed]
    greedy = pscore >= GREEDY
    extra: dict[str, Any] = {}
    if all(r[4] == "epsilon_greedy" for r in rows):
        lengths = np.array([len(r[2]) for r in rows])[:, None]
        extra = {"in_list": np.where(greedy, pscore, lengths * pscore), "eval_in_list": anywhere}
    estimates = slate_off_policy(
        reward,
        pscore,
        position,
        lift=True,
        max_weight=_max_weight(shadow, logged, pscore, greedy),
        **extra,
    )
    best = max(
        (estimates[name] for name in ("item-ips", "iips") if name in estimates), key=lambda e: e.ess
    )
    served_value = float(reward.sum(axis=1).mean())
    return _verdict(best, served_value, margin, n, max(now - since, 1.0), horizon, store)


def _max_weight(
    shadow: np.ndarray, logged: np.ndarray, pscore: np.ndarray, greedy: np.ndarray
) -> dict[str, float]:
    """Largest weights: 1 / (1 - ε) for a shadow that only shows the greedy items of each list;
    otherwise left to the estimator (one over the rarest logged probability)."""
    ranked = np.where(greedy, logged, -1)
    others = ((shadow[:, :, None] != ranked[:, None, :]).all(axis=2) & (shadow >= 0)).any()
    if others or not greedy.any():
        return {}
    return {name: 1.0 / float(pscore[greedy].min()) for name in ("iips", "item-ips")}


def _verdict(
    best: SlateEstimate,
    served_value: float,
    margin: float,
    lists: int,
    elapsed: float,
    horizon: float,
    store: Store,
) -> dict[str, Any]:
    floor = -margin * served_value
    evidence: dict[str, Any] = {
        "estimator": best.name,
        "lift": best.value,
        "low": best.low,
        "high": best.high,
        "ess": best.ess,
        "max_weight": best.max_weight,
        "lists": lists,
        "served_value": served_value,
        "value": served_value + best.value,
        "floor": floor,
    }
    if best.ess >= MIN_ESS and best.low >= floor:
        return {**evidence, "verdict": "pass", "days_needed": 0.0}
    if best.ess >= MIN_ESS and best.high < floor:
        return {**evidence, "verdict": "fail", "days_needed": 0.0}
    # Both the interval's half-width and 1/ESS shrink as 1/lists: scale to a decision.
    distance = abs(best.value - floor)
    half = (best.high - best.low) / 2
    factor = max(MIN_ESS / max(best.ess, 1e-9), (half / distance) ** 2 if distance > 0 else np.inf)
    days = max(factor - 1.0, 0.0) * elapsed / DAY if np.isfinite(factor) else None
    # Exploration drives the variance of the rare heavy terms, roughly as 1/ε.
    epsilon = float(store.settings.exploration.get("epsilon", 0.0) or 0.0)
    wanted = None
    if epsilon > 0 and np.isfinite(factor):
        wanted = min(1.0, epsilon * factor * elapsed / max(horizon, elapsed))
    return {
        **evidence,
        "verdict": "no evidence",
        "days_needed": days,
        "epsilon_for_deadline": wanted,
    }


def _positive(store: Store, recommendation_ids: list[str]) -> set[tuple[str, str]]:
    """(recommendation_id, item_id) pairs that got feedback with a positive signal weight."""
    e, it = schema.events.c, schema.items.c
    types = [t for t, sig in store.settings.signals.items() if sig.weight > 0]
    out: set[tuple[str, str]] = set()
    for start in range(0, len(recommendation_ids), 900):
        chunk = recommendation_ids[start : start + 900]
        with store.read() as conn:
            out.update(
                conn.execute(
                    select(e.recommendation_id, it.item_id)
                    .select_from(schema.events.join(schema.items, e.item_idx == it.idx))
                    .where(e.recommendation_id.in_(chunk), e.type.in_(types))
                ).all()
            )
    return out
