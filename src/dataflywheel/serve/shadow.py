"""Shadow mode: candidates score live requests beside the champion, off the critical path.

:class:`SidecarLog` is the impression log plus a second background thread: after a list is
served, each shadow version scores the same user over the same candidates; its top-k, overlap@k
with what was served and rank correlation with the champion are stored in ``shadow_results``.
A shadow's scoring never changes or slows an answer; what does is the exploration aimed at it
(:class:`dataflywheel.serve.exploration.ShadowExplore`): for that share of requests
:func:`shadow_scores` ranks the request on the request path and its list is served. The loop's
:func:`dataflywheel.loop.shadow_report.shadow_report` then joins those lists with the logged
propensities and clicks for an off-policy estimate of the candidate.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from sqlalchemy import insert, select

from dataflywheel.errors import FlywheelError
from dataflywheel.experiments.serving import ModelCache
from dataflywheel.experiments.tables import interleaving_teams
from dataflywheel.learn.registry import Registry
from dataflywheel.serve.exploration import EpsilonGreedy, Policy, RankedList, ShadowExplore
from dataflywheel.serve.history import Histories
from dataflywheel.serve.impressions import ImpressionLog
from dataflywheel.store import schema
from dataflywheel.store.schema import shadow_results
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0


@dataclass
class ShadowJob:
    """One served list, with what a shadow needs to score the same request."""

    recommendation_id: str
    ts: float
    user: int
    histories: Histories
    candidates: np.ndarray
    champion_scores: np.ndarray
    served: np.ndarray
    keys: Sequence[str | None]
    shown_by: str | None = None
    """The shadow version whose own list was served (aimed exploration), if any."""


def shadow_scores(
    models: ModelCache, version: str, histories: Histories, user: int, candidates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The candidates ``version`` can score and its scores for ``user``'s current history
    (raises FlywheelError when the version cannot be loaded)."""
    model, params = models.get(version)
    row, _ = histories.row(user, model.n_items, params)
    inside = candidates[candidates < model.n_items]
    if inside.size == 0:
        return inside, np.zeros(0)
    return inside, model.score(row, inside)[0].astype(np.float64)


class SidecarLog(ImpressionLog):
    """Impressions, plus shadow scoring and interleaving teams on a second daemon thread."""

    def __init__(self, store: Store, registry: Registry, models: ModelCache) -> None:
        super().__init__(store)
        self.registry = registry
        self.models = models
        self._jobs: queue.Queue[ShadowJob | tuple[str, str, list[str]] | threading.Event | None]
        self._jobs = queue.Queue()
        self._shadows: list[str] = []
        self._checked_at = -float("inf")
        self._worker = threading.Thread(target=self._work, name="shadow", daemon=True)
        self._worker.start()

    def invalidate(self) -> None:
        """Re-read the shadow versions on next use (after a change in this process)."""
        self._checked_at = -float("inf")

    def shadows(self) -> list[str]:
        """Versions in shadow mode (re-read at most once a second)."""
        now = time.monotonic()
        if now - self._checked_at >= REFRESH_SECONDS:
            m = schema.models.c
            with self.store.read() as conn:
                rows = conn.execute(select(m.version).where(m.status == "shadow")).scalars()
                self._shadows = sorted(rows)
            self._checked_at = now
        return self._shadows

    def explore(
        self,
        policy: Policy,
        histories: Histories,
        user: int,
        candidates: np.ndarray,
        scores: np.ndarray,
        k: int,
        rng: np.random.Generator,
    ) -> tuple[RankedList, str | None, str] | None:
        """The list, the shadow version that chose it (None: the champion) and the policy name,
        when ``policy`` aims its ε at the shadows and there are some; else None (no draw)."""
        if not (isinstance(policy, EpsilonGreedy) and policy.shadow and policy.epsilon > 0):
            return None
        versions = self.shadows()
        if not versions:
            return None
        aimed = ShadowExplore(policy.epsilon)
        chosen = aimed.choose(versions, rng)
        if chosen is not None:
            try:
                inside, own = shadow_scores(self.models, chosen, histories, user, candidates)
            except FlywheelError:
                inside = candidates[:0]
            if inside.size:  # else its sidecar result is skipped too: the champion's list
                share = aimed.epsilon / len(versions)
                return aimed.branch(inside, own, k, share), chosen, aimed.name
        return aimed.branch(candidates, scores, k, 1.0 - aimed.epsilon), None, aimed.name

    def shadow(self, job: ShadowJob) -> None:
        self._jobs.put(job)

    def teams(self, recommendation_id: str, experiment_id: str, teams: list[str]) -> None:
        self._jobs.put((recommendation_id, experiment_id, teams))

    def flush(self) -> None:
        super().flush()
        if not self._worker.is_alive():
            return
        done = threading.Event()
        self._jobs.put(done)
        while not done.wait(timeout=1.0):
            if not self._worker.is_alive():
                return

    def close(self) -> None:
        super().close()
        if self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join()

    def _work(self) -> None:
        while True:
            item = self._jobs.get()
            batch: list[Any] = [item]
            while not self._jobs.empty() and len(batch) < 500:
                batch.append(self._jobs.get_nowait())
            results: list[dict[str, Any]] = []
            team_rows: list[dict[str, Any]] = []
            waiters = [job for job in batch if isinstance(job, threading.Event)]
            for job in batch:
                if isinstance(job, ShadowJob):
                    results.extend(self._score(job))
                elif isinstance(job, tuple):
                    rec, experiment, teams = job
                    team_rows.append(
                        {"recommendation_id": rec, "experiment_id": experiment, "teams": teams}
                    )
            try:
                with self.store.write() as conn:
                    if results:
                        conn.execute(insert(shadow_results), results)
                    if team_rows:
                        conn.execute(insert(interleaving_teams), team_rows)
            except Exception:  # the sidecar must keep running; serving is unaffected
                log.exception("could not store %d shadow results", len(results))
            for waiter in waiters:
                waiter.set()
            if any(job is None for job in batch):
                return

    def _score(self, job: ShadowJob) -> list[dict[str, Any]]:
        out = []
        k = job.served.size
        champion = job.served
        if job.shown_by is not None:  # agreement is with the champion's list, not the one served
            champion = job.candidates[np.argsort(-job.champion_scores, kind="stable")[:k]]
        for version in self.shadows():
            try:
                inside, scores = shadow_scores(
                    self.models, version, job.histories, job.user, job.candidates
                )
            except FlywheelError:
                log.warning("shadow %s cannot be loaded; skipped", version)
                continue
            if inside.size == 0:
                continue
            # The list a shadow served is its list for this request (ranked on the request's
            # history, which may have grown since).
            top = (
                job.served
                if version == job.shown_by
                else inside[np.argsort(-scores, kind="stable")[:k]]
            )
            overlap = len(set(top.tolist()) & set(champion.tolist())) / max(k, 1)
            out.append(
                {
                    "recommendation_id": job.recommendation_id,
                    "version": version,
                    "ts": job.ts,
                    "item_ids": [job.keys[int(i)] for i in top],
                    "overlap": overlap,
                    "rank_corr": _rank_corr(job, inside, scores, top),
                }
            )
        return out


def _rank_corr(
    job: ShadowJob, inside: np.ndarray, shadow_scores: np.ndarray, top: np.ndarray
) -> float | None:
    """Spearman correlation of champion and shadow scores over both top-k lists' union.

    ``job.candidates`` and ``inside`` are sorted (``flatnonzero`` order), so positions in them
    are found by binary search.
    """
    champion_top = job.candidates[np.argsort(-job.champion_scores, kind="stable")[: top.size]]
    union = np.union1d(champion_top, top)
    union = union[np.isin(union, inside)]
    if union.size < 3:
        return None
    champion = job.champion_scores[np.searchsorted(job.candidates, union)]
    shadow = shadow_scores[np.searchsorted(inside, union)]
    if np.ptp(champion) == 0 or np.ptp(shadow) == 0:
        return None  # a constant ranking has no rank correlation
    value = float(stats.spearmanr(champion, shadow).statistic)
    return None if np.isnan(value) else value
