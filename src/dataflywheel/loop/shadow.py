"""Shadow mode: candidates score live requests beside the champion, off the critical path.

:class:`SidecarLog` is the impression log plus a second background thread: after a list is
served, each shadow version scores the same user over the same candidates; its top-k, overlap@k
with what was served and rank correlation with the champion are stored in ``shadow_results``.
Nothing a shadow does can change or slow an answer. :func:`shadow_report` then joins those
lists with the logged propensities and clicks for an off-policy estimate of the candidate.
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
from dataflywheel.evaluation.ope import off_policy
from dataflywheel.experiments.serving import ModelCache
from dataflywheel.experiments.tables import interleaving_teams, shadow_results
from dataflywheel.learn.registry import Registry
from dataflywheel.serve.history import Histories
from dataflywheel.serve.impressions import ImpressionLog
from dataflywheel.store import schema
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)
REFRESH_SECONDS = 1.0
MAX_ROUNDS = 5_000


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
        for version in self.shadows():
            try:
                model, params = self.models.get(version)
            except FlywheelError:
                log.warning("shadow %s cannot be loaded; skipped", version)
                continue
            row, _ = job.histories.row(job.user, model.n_items, params)
            inside = job.candidates[job.candidates < model.n_items]
            if inside.size == 0:
                continue
            scores = model.score(row, inside)[0].astype(np.float64)
            k = job.served.size
            top = inside[np.argsort(-scores, kind="stable")[:k]]
            overlap = len(set(top.tolist()) & set(job.served.tolist())) / max(k, 1)
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
