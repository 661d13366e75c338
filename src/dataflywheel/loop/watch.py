"""Watch after promotion: a new champion must hold up on live feedback, or it is rolled back.

For ``watch_seconds`` after a promotion, each loop step compares the champion's outcome per
impression (1 when a click or a strong signal answered the list, else 0) with the previous
champion's over the same length of time just before the promotion. The comparison is the
always-valid sequential test of :func:`dataflywheel.experiments.analyze`, so looking at every
step keeps the false-alarm rate at ``alpha``. Only a significant drop rolls back; too few
impressions, or a difference the test cannot tell from noise, keeps the champion.

The baseline is the previous champion's own traffic before the promotion (not traffic it still
serves: after a promotion it serves none, outside an experiment). A slow drift of the whole
product between the two windows therefore counts against the new champion, which is the cautious
side to err on for an automatic rollback.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import and_, func, select

from dataflywheel.config import RolloutSettings
from dataflywheel.experiments import analyze
from dataflywheel.learn.registry import Registry
from dataflywheel.store import schema
from dataflywheel.store.store import Store

ROLLBACK_PREFIX = "rollback:"


def feedback_types(store: Store) -> list[str]:
    """The event types that count as a success of a served list: clicks and strong signals."""
    strong = [name for name, signal in store.settings.signals.items() if signal.strong]
    return sorted({"click", *strong})


def outcomes(store: Store, version: str, start: float, end: float) -> NDArray[np.float64]:
    """One 0/1 value per impression ``version`` served in [start, end): answered or not."""
    i, e = schema.impressions.c, schema.events.c
    joined = schema.impressions.outerjoin(
        schema.events,
        and_(e.recommendation_id == i.recommendation_id, e.type.in_(feedback_types(store))),
    )
    query = (
        select(func.count(e.id))
        .select_from(joined)
        .where(i.model_version == version, i.ts >= start, i.ts < end)
        .group_by(i.recommendation_id)
    )
    with store.read() as conn:
        counts = conn.execute(query).scalars().all()
    return (np.asarray(counts, dtype=np.float64) > 0).astype(np.float64)


def watch(
    store: Store, registry: Registry, config: RolloutSettings, now: float
) -> dict[str, Any] | None:
    """The watch of the current champion: None outside a watch window, else the evidence with
    ``verdict`` "collecting" (too few impressions), "holding" or "regressed"."""
    champion = registry.champion()
    if champion is None or champion["promoted_at"] is None or config.watch_seconds <= 0:
        return None
    promoted = float(champion["promoted_at"])
    if now - promoted >= config.watch_seconds:
        return None
    entries = [t for t in registry.transitions() if t["to"] == "champion"]
    mine = [t for t in entries if t["version"] == champion["version"]]
    if mine and str(mine[-1]["reason"]).startswith(ROLLBACK_PREFIX):
        return None  # a restored champion already proved itself; no ping-pong
    # The version a rollback would restore (the registry's rule: the latest other champion).
    previous = next(
        (t["version"] for t in reversed(entries) if t["version"] != champion["version"]), None
    )
    if previous is None:
        return None
    new = outcomes(store, champion["version"], promoted, now)
    old = outcomes(store, previous, promoted - config.watch_seconds, promoted)
    evidence: dict[str, Any] = {
        "version": champion["version"],
        "previous": previous,
        "promoted_at": promoted,
        "impressions": int(new.size),
        "previous_impressions": int(old.size),
        "rate": float(new.mean()) if new.size else None,
        "previous_rate": float(old.mean()) if old.size else None,
    }
    if min(new.size, old.size) < config.watch_min_impressions:
        evidence["verdict"] = "collecting"
        evidence["reason"] = (
            f"watching {champion['version']}: {new.size} impressions vs {old.size} of "
            f"{previous}, {config.watch_min_impressions} needed on each side"
        )
        return evidence
    result = analyze(old, new, method="sequential", alpha=config.alpha)
    regressed = result.significant and result.lift < 0
    evidence.update(
        verdict="regressed" if regressed else "holding",
        lift=result.lift,
        low=result.low,
        high=result.high,
        p_value=result.p_value,
        reason=(
            f"{champion['version']} answered {result.treatment_mean:.2%} of {new.size} lists vs "
            f"{result.control_mean:.2%} of {old.size} for {previous} before its promotion "
            f"(lift {result.lift:+.4f} [{result.low:+.4f}, {result.high:+.4f}], "
            f"always-valid p={result.p_value:.3g})"
        ),
    )
    return evidence
