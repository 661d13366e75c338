"""The shadow gate's off-policy evidence: every position of every list a shadow scored.

Each served list is a unit: its items, their logged propensities, which of them got positive
feedback (by ``recommendation_id``), and the shadow's deterministic top-k for the same request.
The verdict is ``pass`` (confidently not worse than the margin), ``fail`` (confidently worse) or
``no evidence`` (too few effective lists, or an interval across the margin), with how much more
traffic, or how much ε, a verdict needs. The gate reads the same growing log at every loop run,
so its intervals are anytime-valid (:func:`dataflywheel.evaluation.slate.anytime_multiplier`):
looking daily, or every minute, does not raise the chance of a wrong verdict.

Lists served by :class:`dataflywheel.serve.exploration.ShadowExplore` (policy
``shadow_explore``) are a randomised split of the requests: the shadow's own lists (its share
ε / m) against the champion's (1 - ε); :func:`dataflywheel.evaluation.slate.aimed_lift` compares
the two branches' mean reward per list. Other logs (uniform ε-greedy slots) go through
:func:`dataflywheel.evaluation.slate.slate_off_policy`, lift over what was served.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.evaluation.slate import (
    SlateEstimate,
    aimed_lift,
    anytime_multiplier,
    deterministic,
    lists_for_half_width,
    slate_off_policy,
)
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Store

DAY = 86_400.0
MAX_LISTS = 20_000
MIN_ESS = 30.0
# ε-greedy logs a ranked slot at 1 - ε and an explored one at ε / rest; ε < 0.5 tells them apart.
GREEDY = 0.5
AIMED = "shadow_explore"

Row = Any  # (recommendation_id, shadow items, served items, propensities, policy, model_version)


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
    epsilon = float(store.settings.exploration.get("epsilon", 0.0) or 0.0)
    timing = (max(now - since, 1.0), horizon, epsilon)
    aimed = [r for r in rows if r[4] == AIMED]
    if aimed:
        # While aimed lists exist they are the randomised split; other lists in the window come
        # from another serving configuration and are left out rather than mixed in.
        others = _shadow_versions(store, since, now) - {version}
        return _aimed(aimed, clicked, version, others, margin, timing)
    return _slate(rows, clicked, margin, timing)


def _aimed(
    rows: list[Row],
    clicked: set[tuple[str, str]],
    version: str,
    others: set[str],
    margin: float,
    timing: tuple[float, float, float],
) -> dict[str, Any]:
    reward = np.array([sum((r[0], item) in clicked for item in r[2]) for r in rows], dtype=float)
    own = np.array([r[5] == version for r in rows])
    champion = np.array([r[5] != version and r[5] not in others for r in rows])
    # The probability logged on the shadow's own lists, else what the champion's lists leave.
    share = next(
        (float(r[3][0]) for r in rows if r[5] == version),
        next((1 - float(r[3][0]) for r, c in zip(rows, champion, strict=True) if c), 0.0)
        / (1 + len(others)),
    )
    n = len(rows)
    if own.sum() < 2 or champion.sum() < 2 or not 0 < share < 1:
        # Nothing to compare yet: project from the rate at which the shadow's lists come.
        more = _more(MIN_ESS / (n * share) if share > 0 else np.inf, timing)
        reason = f"{int(own.sum())} of the shadow's own lists so far, a verdict needs {MIN_ESS:.0f}"
        if more["days_needed"] is not None:
            reason += f"; about {more['days_needed']:.2g} more days at this ε"
        evidence = {"lists": n, "ess": float(own.sum()), "served_value": float(reward.mean())}
        return {**evidence, "verdict": "no evidence", "reason": reason, **more}
    estimate = aimed_lift(reward, own, champion, share=share)
    return _verdict(estimate, float(reward[champion].mean()), reward, margin, share, timing)


def _slate(
    rows: list[Row],
    clicked: set[tuple[str, str]],
    margin: float,
    timing: tuple[float, float, float],
) -> dict[str, Any]:
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
    # The fixed-sample t interval holds for one look; the gate looks again and again.
    half = max((best.high - best.low) / 2, best.std * anytime_multiplier(n))
    best = replace(best, low=best.value - half, high=best.value + half)
    per_list = reward.sum(axis=1)
    return _verdict(best, float(per_list.mean()), per_list, margin, best.ess / n, timing)


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
    baseline: float,
    per_list: np.ndarray,
    margin: float,
    ess_per_list: float,
    timing: tuple[float, float, float],
) -> dict[str, Any]:
    """``baseline``: the reward per list the lift is over (the champion's lists for aimed
    exploration, the served lists otherwise); the floor is ``-margin`` times it."""
    floor = -margin * baseline
    evidence: dict[str, Any] = {
        "estimator": best.name,
        "lift": best.value,
        "low": best.low,
        "high": best.high,
        "std": best.std,
        "interval": "anytime",
        "ess": best.ess,
        "max_weight": best.max_weight,
        "lists": best.lists,
        "served_value": float(per_list.mean()),
        "baseline_value": baseline,
        "value": baseline + best.value,
        "floor": floor,
    }
    if best.ess >= MIN_ESS and best.low >= floor:
        return {**evidence, "verdict": "pass", "days_needed": 0.0}
    if best.ess >= MIN_ESS and best.high < floor:
        return {**evidence, "verdict": "fail", "days_needed": 0.0}
    # At today's traffic the effective lists grow and the standard error shrinks as 1/√lists:
    # the lists at which both suffice, if the lift stays where it is.
    needed = lists_for_half_width(best.std, best.lists, abs(best.value - floor))
    factor = max(
        MIN_ESS / max(ess_per_list * best.lists, 1e-9),
        np.inf if needed is None else needed / best.lists,
    )
    return {**evidence, "verdict": "no evidence", **_more(factor, timing)}


def _more(factor: float, timing: tuple[float, float, float]) -> dict[str, Any]:
    """Days until ``factor`` times today's lists at this traffic, and the ε that would get there
    by the deadline (the variance of the rarely explored lists or slots goes roughly as 1/ε)."""
    elapsed, horizon, epsilon = timing
    finite = bool(np.isfinite(factor))
    days = max(factor - 1.0, 0.0) * elapsed / DAY if finite else None
    wanted = None
    if epsilon > 0 and finite:
        wanted = min(1.0, epsilon * factor * elapsed / max(horizon, elapsed))
    return {"days_needed": days, "epsilon_for_deadline": wanted}


def _shadow_versions(store: Store, since: float, now: float) -> set[str]:
    """Every version that scored requests as a shadow in the window."""
    s = shadow_results.c
    with store.read() as conn:
        found = conn.execute(
            select(s.version).where(s.ts >= since, s.ts <= now).distinct()
        ).scalars()
        return set(found)


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
