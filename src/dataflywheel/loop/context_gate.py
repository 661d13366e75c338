"""The contextual re-ranker's off-policy check: fit on the older logs, judge on the newer ones.

The served lists that carry a declared context field are split in time (the newest
``holdout`` share is held out). The re-ranker is fitted on the older lists
(:mod:`dataflywheel.learn.context_rerank`); on each held-out list the champion is replayed on
the user's history before the list was served (as ``flywheel ope`` does), giving the base
ranking (its top k) and the re-ranked one (its top ``TOP_N`` with the contextual adjustment,
cut to k). Both deterministic rankings are valued on the logged clicks and propensities with
one slate estimator (:func:`dataflywheel.evaluation.slate.slate_off_policy`): ``item-ips`` when
the logging policies give each item's in-list probability (a re-ranker mostly reorders the
champion's items, which ``iips`` can only credit where the logger could show them at the new
position) and it has the larger ESS, else ``iips``. The re-ranker is switched on only when the
lower end of its 95% interval is above the base ranking's estimate, on at least ``MIN_ESS``
effective positions; the verdict, the figures and the fitted lifts are one audit row (action
``context_rerank``) that serving reads.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataflywheel.config import Settings
from dataflywheel.errors import ConfigError, ValidationError
from dataflywheel.evaluation.slate import SlateEstimate, deterministic, slate_off_policy
from dataflywheel.learn.context_rerank import (
    TOP_N,
    ContextReranker,
    LoggedLists,
    adjust,
    fit,
    read_lists,
)
from dataflywheel.learn.models import Recommender, load_model
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import EventArrays, read_events
from dataflywheel.loop.logs import history_row
from dataflywheel.serve.context_rerank import ACTION
from dataflywheel.store import audit
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
MIN_ESS = 30.0
MIN_LISTS = 100
ESTIMATORS = ("item-ips", "iips")
OWN_POSITION = ("greedy", "aimed_epsilon")
GREEDY = 0.5


def fit_and_check(
    store: Store,
    registry: Registry,
    settings: Settings,
    *,
    holdout: float = 0.5,
    now: float | None = None,
    actor: str = "cli",
) -> dict[str, Any]:
    """Fit, evaluate off-policy and record the verdict (which switches re-ranking on or off)."""
    fields = tuple(settings.context_fields)
    if not fields:
        raise ConfigError(
            "declare the context fields used in ranking first (setting context_fields)",
            field="context_fields",
        )
    if not 0 < holdout < 1:
        raise ValidationError("must lie strictly between 0 and 1", field="holdout")
    champion = registry.champion()
    if champion is None:
        raise ValidationError("there is no champion to re-rank; train one first", field="champion")
    now = time.time() if now is None else now
    logs = read_lists(store, fields, until=now)
    if len(logs) < MIN_LISTS:
        raise ValidationError(
            f"{len(logs)} served lists carry a declared context field; at least {MIN_LISTS} "
            "are needed to fit and check a re-ranker",
            field="context_fields",
        )
    cut = float(np.quantile(logs.ts, 1 - holdout))
    older = logs.take(logs.ts < cut)
    newer = logs.take((logs.ts >= cut) & np.array([v is not None for v in logs.model_version]))
    reranker = fit(older, fields)
    report: dict[str, Any] = {
        "fields": list(fields),
        "champion": champion["version"],
        "fit": {"lists": len(older), "until": cut},
        "reranker": reranker.to_dict(),
    }
    if len(newer) == 0:
        evaluation: dict[str, Any] = {"lists": 0}
        verdict, reason = False, "no held-out list was served by a model"
    else:
        model = load_model(Path(champion["artifact"]))
        candidate, base = _replay(
            store, model, champion["params"].get("matrix", {}), newer, reranker
        )
        evaluation, verdict, reason = _judge(newer, candidate, base)
    report.update(
        evaluation=evaluation,
        verdict="pass" if verdict else "refused",
        active=verdict,
        reason=reason,
    )
    with store.write() as conn:
        report["audit_id"] = audit.record(
            conn, actor=actor, action=ACTION, subject=champion["version"], detail=report, now=now
        )
    log.info("context re-ranker %s: %s", report["verdict"], reason)
    return report


def switch_off(store: Store, *, reason: str, actor: str = "cli") -> dict[str, Any]:
    """Stop re-ranking by context (serving processes follow within seconds)."""
    detail: dict[str, Any] = {"active": False, "verdict": "off", "reason": reason}
    with store.write() as conn:
        detail["audit_id"] = audit.record(
            conn, actor=actor, action=ACTION, subject="context_rerank", detail=detail
        )
    return detail


def _judge(
    logs: LoggedLists, candidate: NDArray[np.int64], base: NDArray[np.int64]
) -> tuple[dict[str, Any], bool, str]:
    """Both rankings valued by the same slate estimator (``item-ips`` where the logging
    policies give in-list probabilities and it has the larger ESS, else ``iips``); pass when
    the re-ranked lower bound beats the base estimate."""
    in_list = _in_list(logs)
    estimates = {}
    for name, ranking in (("reranked", candidate), ("base", base)):
        position, anywhere = deterministic(ranking, logs.items)
        estimates[name] = slate_off_policy(
            logs.reward,
            logs.pscore,
            position,
            in_list=in_list,
            eval_in_list=None if in_list is None else anywhere,
        )
    estimator = max(
        (e for e in ESTIMATORS if e in estimates["reranked"]),
        key=lambda e: estimates["reranked"][e].ess,
    )
    ours, theirs = estimates["reranked"][estimator], estimates["base"][estimator]
    changed = float((candidate != base).any(axis=1).mean())
    evaluation = {
        "lists": len(logs),
        "estimator": estimator,
        "reranked": _figures(ours),
        "base": _figures(theirs),
        "lift": ours.value - theirs.value,
        "lists_changed": changed,
    }
    summary = (
        f"clicks per list re-ranked {ours.value:.4f} [{ours.low:.4f}, {ours.high:.4f}] vs base "
        f"{theirs.value:.4f} ({estimator}, ESS {ours.ess:.0f}, {len(logs)} held-out lists, "
        f"{changed:.0%} changed)"
    )
    if ours.ess < MIN_ESS:
        return evaluation, False, f"too little evidence: {summary}"
    if ours.low <= theirs.value:
        return evaluation, False, f"the lower bound does not beat the base: {summary}"
    return evaluation, True, f"the lower bound beats the base: {summary}"


def _in_list(logs: LoggedLists) -> NDArray[np.float64] | None:
    """Each logged item's probability of being anywhere in its list, where every logging policy
    gives it: an item of ``greedy`` or ``aimed_epsilon`` can only take its own position (the
    logged propensity); under ``epsilon_greedy`` a greedy item likewise, an explored one any of
    the list's positions (list length × propensity; greedy and explored are told apart at 0.5,
    as the shadow gate does). None when another policy served a list."""
    policies = np.array([p.removeprefix("popular+") for p in logs.policy])
    if not np.isin(policies, [*OWN_POSITION, "epsilon_greedy"]).all():
        return None
    lengths = (logs.items >= 0).sum(axis=1, keepdims=True)
    explored = (policies == "epsilon_greedy")[:, None] & (logs.pscore < GREEDY)
    return np.where(explored, np.minimum(lengths * logs.pscore, 1.0), logs.pscore)


def _figures(e: SlateEstimate) -> dict[str, float]:
    return {"value": e.value, "low": e.low, "high": e.high, "ess": e.ess}


def _replay(
    store: Store,
    model: Recommender,
    matrix_params: dict[str, Any],
    logs: LoggedLists,
    reranker: ContextReranker,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The re-ranked and the base top k (dense item ids, -1 pads) of each held-out list."""
    events, _ = read_events(store)
    by_user: dict[int, NDArray[np.int64]] = defaultdict(lambda: np.zeros(0, dtype=np.int64))
    order = np.argsort(events.user_idx, kind="stable")
    users, starts = np.unique(events.user_idx[order], return_index=True)
    by_user.update(zip(users.tolist(), np.split(order, starts[1:]), strict=True))
    masks = logs.category_masks(model.n_items)
    k = logs.items.shape[1]
    candidate = np.full((len(logs), k), -1, dtype=np.int64)
    base = np.full((len(logs), k), -1, dtype=np.int64)
    lifts_of: dict[tuple[tuple[str, str], ...], NDArray[np.float64]] = {}
    for row in range(len(logs)):
        ids, scores = _top(
            model, matrix_params, events, by_user[int(logs.user_idx[row])], float(logs.ts[row])
        )
        width = min(k, ids.size)
        base[row, :width] = ids[:width]
        pairs = reranker.known(logs.values[row])
        if not pairs:
            candidate[row] = base[row]
            continue
        if pairs not in lifts_of:
            lifts_of[pairs] = reranker.item_lifts(pairs, masks, model.n_items)
        adjusted = adjust(scores, lifts_of[pairs][ids])
        candidate[row, :width] = ids[np.argsort(-adjusted, kind="stable")[:width]]
    return candidate, base


def _top(
    model: Recommender,
    matrix_params: dict[str, Any],
    events: EventArrays,
    rows: NDArray[np.int64],
    ts: float,
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The model's best ``TOP_N`` items and scores for a user's history before ``ts``, consumed
    items excluded as serving does."""
    ids, scores = model.recommend(history_row(model, matrix_params, events, rows, ts), TOP_N)
    keep = (ids[0] >= 0) & np.isfinite(scores[0])
    return ids[0][keep].astype(np.int64), scores[0][keep].astype(np.float64)
