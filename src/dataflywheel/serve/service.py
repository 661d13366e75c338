"""Serving: the champion scores a user's current history, exploration picks the list, and every
answer is logged as an impression with its propensities.

The champion is hot-reloaded when the registry names a new one; if its artifact cannot be used
the previous champion keeps serving (or popularity, when there is none).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataflywheel.config import Settings
from dataflywheel.errors import ModelError, NotFoundError, ValidationError
from dataflywheel.experiments.interleaving import team_draft
from dataflywheel.experiments.serving import ArmRouter, ModelCache, Route
from dataflywheel.learn.models import Recommender, load_model
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import read_events
from dataflywheel.serve import erased
from dataflywheel.serve.catalog import Catalog
from dataflywheel.serve.content import ContentScorer
from dataflywheel.serve.context_rerank import ContextRanking
from dataflywheel.serve.exploration import Policy, RankedList, make_policy
from dataflywheel.serve.exploration_aimed import CandidateCounts
from dataflywheel.serve.history import Histories
from dataflywheel.serve.segments import Segments
from dataflywheel.serve.shadow import ShadowJob, SidecarLog
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
MAX_K = 200
CHAMPION_CHECK_SECONDS = 1.0
SCORE_BATCH = 256
"""Users scored by the champion in one call (bounds the dense score block)."""


@dataclass
class Served:
    """What serves right now: a model (None = popularity only) and the histories it reads."""

    version: str | None
    model: Recommender | None
    matrix_params: dict[str, Any]
    histories: Histories
    snapshot_popularity: np.ndarray

    def popularity(self, size: int) -> np.ndarray:
        counts = self.histories.tail_popularity(size)
        base = self.snapshot_popularity[: min(size, len(self.snapshot_popularity))]
        counts[: len(base)] += base
        return counts


Scores = tuple[np.ndarray, np.ndarray, bool]
"""Scores over the catalogue, the user's consumed items, and whether the scores are personal."""


def _check_k(k: int, most: int = MAX_K) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= most:
        raise ValidationError(f"k must be an integer from 1 to {most}", field="k")


class RecommendationService:
    """Answers recommendation and similar-item requests for one process."""

    def __init__(self, store: Store, registry: Registry, settings: Settings) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.catalog = Catalog(store, settings.content_text_weight)
        self.content = ContentScorer(
            self.catalog.content, settings.content_prior_weight, settings.seed or 0
        )
        self.models = ModelCache(registry)
        self.router = ArmRouter(store)
        self.impressions = SidecarLog(store, registry, self.models)
        self.policy: Policy = make_policy(settings.exploration)
        self.segments = Segments(store, settings.segment_attributes)
        self.context = ContextRanking(store, settings)
        self.deletions = erased.DeletionWatch(store)
        self._served: Served | None = None
        self._checked_at = -np.inf
        self._lock = threading.Lock()
        self._rng = np.random.default_rng(settings.seed)

    def close(self) -> None:
        self.impressions.close()
        if self._served is not None:
            # Histories of earlier champions may still be read by a request in flight; their
            # connections close when they are collected.
            self._served.histories.close()

    def invalidate(self) -> None:
        """Look up the champion, shadows and experiment on the next request (after the loop or
        an API call changed them in this process), not at the next periodic check."""
        self._checked_at = -np.inf
        self.router.invalidate()
        self.impressions.invalidate()
        self.context.invalidate()

    def refresh(self) -> None:
        """Run the periodic checks of the champion and the catalogue that are due (what
        :meth:`fresh` reports); a check already running in another thread is not waited for."""
        self.served()
        self.catalog.refresh()

    def fresh(self) -> bool:
        """Whether a request would be answered from loaded state, with no periodic check of the
        champion (which may load a model) or of the catalogue due."""
        now = time.monotonic()
        return (
            self._served is not None
            and now - self._checked_at < CHAMPION_CHECK_SECONDS
            and self.catalog.fresh(now)
        )

    def forget_deleted(self) -> None:
        """Let go of what erasures since the last check removed, now (after an erasure made
        by this process): the next request already answers without it."""
        with self._lock:
            histories = None if self._served is None else self._served.histories
            erased.forget(self.store, self.deletions.poll(), histories, self.catalog)

    # The champion ---------------------------------------------------------------------------

    def served(self) -> Served:
        """The current champion, reloading it when the registry names another one."""
        now = time.monotonic()
        if self._served is not None and now - self._checked_at < CHAMPION_CHECK_SECONDS:
            return self._served
        # While another thread checks (or loads a new champion), answer with the current one,
        # unless there is none yet or this process changed the champion (invalidate()).
        if not self._lock.acquire(blocking=self._served is None or self._checked_at == -np.inf):
            assert self._served is not None
            return self._served
        try:
            self._checked_at = now
            # Before a champion loads: a deletion drops the event-log copy it would read.
            deleted = self.deletions.poll()
            champion = self.registry.champion()
            version = None if champion is None else champion["version"]
            if self._served is None or self._served.version != version:
                try:
                    self._served = self._load(champion)
                except ModelError:
                    log.exception("champion %s cannot be loaded; keeping the previous one", version)
                    if self._served is None:
                        self._served = self._load(None)
            erased.forget(self.store, deleted, self._served.histories, self.catalog)
            return self._served
        finally:
            self._lock.release()

    def _load(self, champion: dict[str, Any] | None) -> Served:
        if champion is None:
            histories = Histories(self.store, read_events(self.store, upto=0)[0], 0)
            return Served(None, None, {}, histories, np.zeros(0))
        model = load_model(champion["artifact"])
        watermark = self.store.snapshot_watermark(champion["snapshot_id"])
        if watermark is None:
            raise ModelError(f"snapshot {champion['snapshot_id']} of {champion['version']} is gone")
        events, _ = read_events(self.store, upto=watermark)
        positive = events.weight > 0
        popularity = np.bincount(events.item_idx[positive], minlength=model.n_items).astype(float)
        histories = Histories(self.store, events, int(watermark))
        return Served(
            champion["version"], model, champion["params"].get("matrix", {}), histories, popularity
        )

    # Requests -------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        context: Mapping[str, Any] | None = None,
        item_filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The contract's recommendation object; the answer is logged as an impression."""
        self._check_user(user_id, "user_id")
        return self._serve([user_id], k, context, item_filter, exclude, exclude_consumed, [now])[0]

    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        context: Mapping[str, Any] | None = None,
        item_filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | Sequence[float] | None = None,
    ) -> list[dict[str, Any]]:
        """One answer per user, in order, each the same as :meth:`recommend` would give (and
        logged the same way); the champion, live histories and catalogue are read once.

        ``now`` is one time for every request or one per request.
        """
        if isinstance(user_ids, str) or not isinstance(user_ids, Sequence):
            raise ValidationError("must be a list of user ids", field="user_ids")
        for position, user_id in enumerate(user_ids):
            self._check_user(user_id, f"user_ids[{position}]")
        if now is None or isinstance(now, int | float):
            times: Sequence[float | None] = [now] * len(user_ids)
        elif len(now) != len(user_ids):
            raise ValidationError("must be one time, or one per user id", field="now")
        else:
            times = now
        return self._serve(user_ids, k, context, item_filter, exclude, exclude_consumed, times)

    def rank(
        self,
        user_id: str,
        candidates: Sequence[str],
        k: int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        item_filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The given items only, ranked for ``user_id`` (all of them when ``k`` is None), as
        the same logged recommendation object; items the champion has not seen are ranked by
        their content (:mod:`dataflywheel.serve.content`)."""
        self._check_user(user_id, "user_id")
        only = self._candidates(candidates)
        k = only.size if k is None else k
        _check_k(k, max(MAX_K, self.settings.max_candidates))
        return self._serve(
            [user_id], k, context, item_filter, exclude, exclude_consumed, [now], only
        )[0]

    def _candidates(self, candidates: object) -> np.ndarray:
        """Dense ids of the distinct candidate items; an id the store has never seen is a
        ValidationError naming its index."""
        most = self.settings.max_candidates
        if isinstance(candidates, str) or not isinstance(candidates, Sequence) or not candidates:
            raise ValidationError("must be a non-empty list of item ids", field="candidates")
        if len(candidates) > most:
            raise ValidationError(f"at most {most} items", field="candidates")
        self.catalog.refresh()
        found: dict[int, None] = {}
        for position, item_id in enumerate(candidates):
            if not isinstance(item_id, str):
                raise ValidationError("must be an item id", field=f"candidates[{position}]")
            idx = self.catalog.index.get(item_id)
            if idx is None:  # upserted by another process since the last read
                self.catalog.refresh(force=True)
                idx = self.catalog.index.get(item_id)
            if idx is None:
                raise ValidationError(f"unknown item {item_id!r}", field=f"candidates[{position}]")
            found[idx] = None
        return np.fromiter(found, dtype=np.int64, count=len(found))

    def _check_user(self, user_id: object, name: str) -> None:
        if not isinstance(user_id, str) or not 1 <= len(user_id) <= self.settings.max_id_length:
            raise ValidationError("user_id must be a non-empty string", field=name)

    def _serve(
        self,
        user_ids: Sequence[str],
        k: int,
        context: Mapping[str, Any] | None,
        item_filter: Mapping[str, Any] | None,
        exclude: Sequence[str],
        exclude_consumed: bool,
        times: Sequence[float | None],
        only: np.ndarray | None = None,
    ) -> list[dict[str, Any]]:
        """Answers for ``user_ids``; ``only``: the dense ids the lists may hold (candidates)."""
        if only is None:
            _check_k(k)
        values = self.context.values(context)
        item_filter = self.context.item_filter(values, item_filter)
        served = self.served()
        served.histories.catch_up()
        self.catalog.refresh()
        allowed = self.catalog.allowed(item_filter, exclude)
        if only is not None:
            keep = np.zeros(allowed.size, dtype=bool)
            keep[only[only < allowed.size]] = True
            allowed &= keep
        users = self.store.lookup_ids("users", list(dict.fromkeys(user_ids)))
        routes = [self.router.route(user_id) for user_id in user_ids]
        # Requests outside experiments are scored by the champion together, in blocks.
        plain = [n for n, route in enumerate(routes) if route is None]
        scored: dict[int, Scores] = {}
        for start in range(0, len(plain), SCORE_BATCH):
            block = plain[start : start + SCORE_BATCH]
            found = self._champion_scores(
                served, [users.get(user_ids[n]) for n in block], allowed.size
            )
            scored.update((block[j], found[j]) for j in found)
        return [
            self._answer(
                served,
                allowed.copy(),
                user_id,
                users.get(user_id),
                routes[n],
                scored.get(n),
                k,
                context,
                values,
                exclude_consumed,
                time.time() if ts is None else ts,
                every=only is not None,
            )
            for n, (user_id, ts) in enumerate(zip(user_ids, times, strict=True))
        ]

    def _answer(
        self,
        served: Served,
        allowed: np.ndarray,
        user_id: str,
        user: int | None,
        route: Route | None,
        scored: Scores | None,
        k: int,
        context: Mapping[str, Any] | None,
        values: Mapping[str, str],
        exclude_consumed: bool,
        ts: float,
        every: bool = False,
    ) -> dict[str, Any]:
        """One user's list from already-read serving state (``scored``: the champion's scores
        when computed in a batch); logs the impression. ``every``: items with no score at all
        (new, without metadata) are ranked last rather than left out (given candidates).
        ``values``: the declared context, which re-ranks the champion's personal lists."""
        arm, policy, route = self._arm(served, route)
        scores, consumed, personal = scored or self._scores(arm, user, allowed.size)
        if personal and user is not None and self.settings.content_cold_start:
            self._score_unseen(arm, user, scores, allowed)
        if every:
            unscored = allowed & ~np.isfinite(scores)
            if unscored.any():
                finite = scores[allowed & ~unscored]
                scores[unscored] = (finite.min() if finite.size else 0.0) - 1.0
        if exclude_consumed and consumed.size:
            allowed[consumed[consumed < allowed.size]] = False
        candidates = np.flatnonzero(allowed & np.isfinite(scores))
        teams: list[str] = []
        shown_by: str | None = None
        policy_name = policy.name
        if route is not None and route.kind == "interleaving":
            ranked, teams, personal = self._interleave(route, served, user, allowed, k)
            version: str | None = "+".join(a["model_version"] for a in route.arms)
        else:
            # Plain traffic while a shadow is evaluated: ε-greedy's ε serves the shadow's list.
            aimed = None
            if route is None and personal and values:
                self.context.rerank(self.catalog, scores, candidates, values)
            candidate_scores = scores[candidates]
            if route is None and personal and user is not None:
                aimed = self.impressions.explore(
                    policy, served.histories, user, candidates, candidate_scores, k, self._rng
                )
            if aimed is None:
                counts = None
                if policy.uses_counts:  # interactions in the champion's snapshot; new: 0
                    counts = CandidateCounts(served.snapshot_popularity, candidates)
                ranked = policy.rank(candidates, candidate_scores, k, self._rng, counts)
            else:
                ranked, shown_by, policy_name = aimed
            version = shown_by or arm.version
        items = [
            {"item_id": self.catalog.keys[int(idx)], "score": float(score), "propensity": float(p)}
            for idx, score, p in zip(ranked.items, ranked.scores, ranked.propensities, strict=True)
        ]
        recommendation_id = uuid.uuid4().hex
        answer = {
            "recommendation_id": recommendation_id,
            "model_version": version if personal else None,
            "policy": policy_name if personal else f"popular+{policy.name}",
            "experiment": None if route is None else {"id": route.experiment_id, "arm": route.arm},
            "items": items,
        }
        self.impressions.log(
            {
                "recommendation_id": answer["recommendation_id"],
                "user_idx": user,
                "user_id": user_id,
                "ts": ts,
                "model_version": answer["model_version"],
                "policy": "team_draft" if teams else answer["policy"],
                "experiment_id": None if route is None else route.experiment_id,
                "arm": None if route is None else route.arm,
                "item_ids": [i["item_id"] for i in items],
                "scores": [i["score"] for i in items],
                "propensities": [i["propensity"] for i in items],
                "context": dict(context) if context else None,
            }
        )
        if teams and route is not None:
            self.impressions.teams(recommendation_id, route.experiment_id, teams)
        elif personal and user is not None and arm is served and self.impressions.shadows():
            self.impressions.shadow(
                ShadowJob(
                    recommendation_id,
                    ts,
                    user,
                    served.histories,
                    candidates,
                    scores[candidates],
                    np.asarray(ranked.items, dtype=np.int64),
                    self.catalog.keys,
                    shown_by,
                )
            )
        return answer

    # Experiments ----------------------------------------------------------------------------

    def _arm(self, served: Served, route: Route | None) -> tuple[Served, Policy, Route | None]:
        """What serves the user's arm; an arm whose model cannot load serves the champion and
        leaves the request out of the experiment."""
        if route is None or route.kind != "ab":
            return served, self.policy, route
        arm = route.definition()
        policy = make_policy(arm["policy"]) if arm.get("policy") else self.policy
        try:
            return self._with_model(served, arm.get("model_version")), policy, route
        except ModelError:
            log.exception("arm %s of %s cannot be loaded", route.arm, route.experiment_id)
            return served, self.policy, None

    def _with_model(self, served: Served, version: str | None) -> Served:
        """``served`` with another version's model over the same live histories."""
        if version is None or version == served.version:
            return served
        model, matrix_params = self.models.get(version)
        return Served(version, model, matrix_params, served.histories, served.snapshot_popularity)

    def _interleave(
        self, route: Route, served: Served, user: int | None, allowed: np.ndarray, k: int
    ) -> tuple[RankedList, list[str], bool]:
        """Team-draft the two arms' greedy lists; the score shown is the drafting team's."""
        ranked: list[np.ndarray] = []
        score_of: list[dict[int, float]] = []
        personal = False
        for arm in route.arms:
            scores, _, own = self._scores(
                self._with_model(served, arm["model_version"]), user, allowed.size
            )
            personal |= own
            pool = np.flatnonzero(allowed & np.isfinite(scores))
            top = pool[np.argsort(-scores[pool], kind="stable")[:k]]
            ranked.append(top)
            score_of.append({int(i): float(scores[i]) for i in top})
        merged, teams = team_draft(ranked[0].tolist(), ranked[1].tolist(), k, self._rng)
        values = [score_of[0 if t == "A" else 1][i] for i, t in zip(merged, teams, strict=True)]
        # Team draft randomises only who drafts first; these lists are not for off-policy use.
        result = RankedList(
            np.asarray(merged, dtype=np.int64), np.asarray(values), np.ones(len(merged))
        )
        return result, teams, personal

    def _champion_scores(
        self, served: Served, users: list[int | None], size: int
    ) -> dict[int, Scores]:
        """Personal scores of the given users (by position) that have a history, in one model
        call; the others are left to :meth:`_scores`."""
        if served.model is None:
            return {}
        n_items = served.model.n_items
        rows, found = [], {}
        for position, user in enumerate(users):
            if user is None or not served.histories.known(user):
                continue
            row, consumed = served.histories.row(user, n_items, served.matrix_params)
            if row.nnz:
                rows.append(row)
                found[position] = consumed
        if not rows:
            return {}
        stacked = rows[0] if len(rows) == 1 else sp.vstack(rows, format="csr")
        model_scores = served.model.score(stacked, np.arange(n_items))
        width = min(size, n_items)
        out = {}
        for j, (position, consumed) in enumerate(found.items()):
            scores = np.full(size, -np.inf)
            scores[:width] = model_scores[j, :width]
            out[position] = (scores, consumed, True)
        return out

    def _scores(self, served: Served, user: int | None, size: int) -> Scores:
        """Scores over the catalogue, the user's consumed items, and whether they are personal."""
        consumed = np.zeros(0, dtype=np.int64)
        if user is not None and served.histories.known(user):
            n_items = served.model.n_items if served.model is not None else size
            row, consumed = served.histories.row(user, n_items, served.matrix_params)
            if served.model is not None and row.nnz:
                scores = np.full(size, -np.inf)
                model_scores = served.model.score(row, np.arange(served.model.n_items))[0]
                width = min(size, len(model_scores))
                scores[:width] = model_scores[:width]
                return scores, consumed, True
        popular = served.popularity(size)
        if user is not None and not consumed.size:
            segment = self.segments.popularity(user, served.histories, size)
            if segment is not None:
                # Everyone's popularity only breaks ties within the segment's counts.
                return np.log1p(segment) + 1e-3 * np.log1p(popular), consumed, False
        return np.log1p(popular), consumed, False

    def _score_unseen(
        self, served: Served, user: int, scores: np.ndarray, allowed: np.ndarray
    ) -> None:
        """Score the allowed items the champion has no evidence on (created after it, or with
        no positive interaction in its snapshot) from their content, in place."""
        assert served.model is not None
        n_known = served.model.n_items
        wanted = self.content.unseen(allowed, n_known, served.snapshot_popularity)
        if wanted.size:
            row, _ = served.histories.row(user, allowed.size, served.matrix_params)
            self.content.fill(scores, row, wanted, served.snapshot_popularity)

    def similar(self, item_id: str, k: int = 10) -> dict[str, Any]:
        """Items most related to ``item_id`` under the champion (hidden items never returned)."""
        _check_k(k)
        self.catalog.refresh()
        idx = self.catalog.index.get(item_id)
        if idx is None:
            self.catalog.refresh(force=True)
            idx = self.catalog.index.get(item_id)
        if idx is None:
            raise NotFoundError(f"unknown item {item_id!r}", field="item_id")
        served = self.served()
        if served.model is None or idx >= served.model.n_items:
            return {"item_id": item_id, "model_version": served.version, "items": []}
        ids, scores = served.model.similar_items(idx, min(served.model.n_items - 1, k * 3) or 1)
        visible = self.catalog.visible
        items = [
            {"item_id": self.catalog.keys[int(i)], "score": float(s)}
            for i, s in zip(ids, scores, strict=True)
            if i >= 0 and i < visible.size and visible[i] and np.isfinite(s)
        ][:k]
        return {"item_id": item_id, "model_version": served.version, "items": items}
