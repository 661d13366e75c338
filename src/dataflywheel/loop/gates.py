"""Gates and automatic promotion: a candidate moves candidate → shadow → experiment → champion
only while every stage says it is not worse than the champion, and every move records why.

Stages, each with thresholds in :class:`~dataflywheel.config.RolloutSettings`:
offline (holdout NDCG@10 of both configurations refit on the same split) and regression suites
right after training; shadow (agreement and the off-policy estimate on live traffic); the
experiment (A/B or interleaving, decided on always-valid intervals, blocked by SRM). Where
traffic is too thin for a stage to conclude before its deadline, the earlier gates decide and
the reason says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from dataflywheel.config import RolloutSettings, Settings
from dataflywheel.errors import FlywheelError
from dataflywheel.experiments.report import experiment_status
from dataflywheel.experiments.store import Experiments
from dataflywheel.label.labels import Labels
from dataflywheel.label.queue import LabelQueue
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.models import load_model
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.snapshot import Snapshot, take_snapshot
from dataflywheel.learn.trainer import Holdout
from dataflywheel.loop.ope_gate import shadow_evidence
from dataflywheel.loop.shadow_report import shadow_report
from dataflywheel.loop.watch import watch
from dataflywheel.serve.exploration import make_policy
from dataflywheel.store.store import Store

K = 10


@dataclass
class Gate:
    """One gate's verdict: passed (True/False) or no evidence (None), with the evidence."""

    name: str
    passed: bool | None
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)


class Rollout:
    """Drives candidates through the stages; called by :meth:`Loop.run_once`."""

    def __init__(
        self, store: Store, registry: Registry, settings: Settings, labels: Labels
    ) -> None:
        self.store = store
        self.registry = registry
        self.settings = settings
        self.experiments = Experiments(store, registry, make_policy)
        self.labels = labels
        self.queue: LabelQueue = labels.queue
        self.config: RolloutSettings = settings.rollout
        # Raises when this process may no longer change models (the loop lost its lease).
        self.fence: Callable[[], None] = lambda: None

    # After training -------------------------------------------------------------------------

    def admit(
        self, candidate: dict[str, Any], champion: dict[str, Any], now: float
    ) -> dict[str, Any]:
        """Offline and regression gates; a pass starts shadow mode (or the next stage)."""
        gates = [self.offline(candidate, champion, now), self.regression(candidate, champion)]
        failed = [g for g in gates if g.passed is False]
        detail = "; ".join(g.detail for g in gates)
        if failed:
            self.registry.set_status(candidate["version"], "retired", f"gate: {detail}", now)
            return _step("kept", champion["version"], detail, gates)
        if self.config.shadow:
            self.registry.set_status(candidate["version"], "shadow", f"passed: {detail}", now)
            return _step("shadowing", candidate["version"], detail, gates)
        return self._next_after_shadow(candidate["version"], champion, detail, now, gates)

    def offline(self, candidate: dict[str, Any], champion: dict[str, Any], now: float) -> Gate:
        """Both configurations fit on today's per-user temporal split; what the candidate's own
        search already scored on this very split (itself, the champion's configuration as the
        incumbent) is not fitted again."""
        metrics = candidate["metrics"]
        trained_on = self.store.snapshot_watermark(candidate["snapshot_id"])
        fresh = trained_on == self.store.latest_event_id()
        holdout: Holdout | None = None

        def refit(version: dict[str, Any]) -> dict[str, Any]:
            nonlocal holdout
            if holdout is None:
                holdout = Holdout.from_store(self.store, now=now)
            params = version["params"]
            return holdout.evaluate(version["name"], params["model"], params["matrix"])

        ours = metrics if fresh else refit(candidate)
        incumbent = metrics.get("incumbent") or {}
        if (champion["name"], champion["params"]) == (candidate["name"], candidate["params"]):
            theirs = ours
        elif fresh and incumbent.get("version") == champion["version"]:
            theirs = incumbent
        else:
            theirs = refit(champion)
        needed = theirs["ndcg@10"] * (1 + self.settings.promote_min_gain)
        detail = f"holdout NDCG@10 {ours['ndcg@10']:.4f} vs champion {theirs['ndcg@10']:.4f}"
        evidence = {"candidate": ours["ndcg@10"], "champion": theirs["ndcg@10"]}
        return Gate("offline", ours["ndcg@10"] >= needed, detail, evidence)

    def regression(self, candidate: dict[str, Any], champion: dict[str, Any]) -> Gate:
        """Both versions on every regression case; the candidate may not fail more of them."""
        suites = self.labels.suites()
        cases = [case for suite in suites.values() for case in suite]
        if not cases:
            return Gate("regression", None, "no regression cases")
        snapshot = take_snapshot(self.store, record=False)
        ours = _passes(self.store, candidate, cases, snapshot, self.config.regression_k)
        theirs = _passes(self.store, champion, cases, snapshot, self.config.regression_k)
        passed = ours >= theirs - self.config.regression_tolerance
        detail = f"regression suites {ours}/{len(cases)} vs champion {theirs}/{len(cases)}"
        return Gate("regression", passed, detail, {"candidate": ours, "champion": theirs})

    # Later stages ---------------------------------------------------------------------------

    def watch(self, now: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """Watch a newly promoted champion (see :mod:`dataflywheel.loop.watch`): (the rollback
        step when it clearly regressed, else None; the watch evidence, None outside a watch)."""
        evidence = watch(self.store, self.registry, self.config, now)
        if evidence is None or evidence["verdict"] != "regressed":
            return None, evidence
        self.fence()
        reason = f"watch after promotion: {evidence['reason']}"
        running = self.experiments.running()
        if running is not None:  # its control arm is the champion being rolled back
            self.experiments.finish(running["id"], f"champion rolled back: {reason}", now=now)
        restored = self.registry.rollback(reason, now, evidence=evidence)
        gate = Gate("watch", False, evidence["reason"], evidence)
        return _step("rolled_back", restored["version"], reason, [gate]), evidence

    def advance(self, now: float) -> dict[str, Any] | None:
        """Move the candidate in flight (experiment or shadow) on; None when there is none."""
        self.fence()
        running = self.experiments.running()
        if running is not None:
            return self._conclude(running, now)
        shadows = [v for v in self.registry.versions() if v["status"] == "shadow"]
        if not shadows:
            return None
        champion = self.registry.champion()
        if champion is None:
            return None
        return self._judge_shadow(shadows[0], champion, now)

    def shadow_gate(self, version: str, since: float, now: float) -> Gate:
        """Pass, fail or no evidence (None) from every position of the lists the shadow scored
        (:mod:`dataflywheel.loop.ope_gate`); agreement from :func:`shadow_report`."""
        report = shadow_report(
            self.store, version, since, min_matches=self.config.shadow_min_matches
        )
        agreement = (
            f"shadow on {report['requests']} requests, overlap@k {report['overlap']:.2f}"
            if report["requests"]
            else "no shadow traffic"
        )
        evidence = shadow_evidence(
            self.store,
            version,
            since,
            now,
            margin=self.config.ope_margin,
            horizon=self.config.shadow_max_seconds,
        )
        report = {**report, "ope": evidence}
        verdict = evidence["verdict"]
        if "estimator" not in evidence:
            return Gate("shadow", None, f"{agreement}; no evidence: {evidence['reason']}", report)
        detail = (
            f"{agreement}; off-policy {verdict}: {evidence['estimator']} lift per list "
            f"{evidence['lift']:+.4f} [{evidence['low']:+.4f}, {evidence['high']:+.4f}] vs floor "
            f"{evidence['floor']:+.4f}, ESS {evidence['ess']:.0f} of {evidence['lists']} lists"
        )
        if verdict == "no evidence" and evidence["days_needed"] is not None:
            detail += f"; about {evidence['days_needed']:.2g} more days at this ε"
        return Gate("shadow", {"pass": True, "fail": False}.get(verdict), detail, report)

    def _judge_shadow(
        self, shadow: dict[str, Any], champion: dict[str, Any], now: float
    ) -> dict[str, Any]:
        since = _entered(self.registry, shadow["version"], "shadow")
        gate = self.shadow_gate(shadow["version"], since, now)
        enough = gate.evidence.get("requests", 0) >= self.config.shadow_min_requests
        # No evidence never promotes: the online test decides, or without one the candidate
        # waits for evidence until the deadline and is then retired.
        online = self.config.experiment != "none"
        waiting = not enough or (gate.passed is None and not online)
        if waiting and now - since < self.config.shadow_max_seconds:
            return _step("waiting", shadow["version"], f"shadow: {gate.detail}", [gate])
        if gate.passed is None and online:
            gate.detail += "; the online test decides"
        elif not gate.passed:
            self.registry.set_status(
                shadow["version"], "retired", f"shadow gate: {gate.detail}", now
            )
            return _step("kept", champion["version"], gate.detail, [gate])
        return self._next_after_shadow(shadow["version"], champion, gate.detail, now, [gate])

    def _next_after_shadow(
        self,
        version: str,
        champion: dict[str, Any],
        detail: str,
        now: float,
        gates: list[Gate],
    ) -> dict[str, Any]:
        """Start the experiment stage, or promote when experiments are off."""
        self.fence()
        if self.config.experiment == "none":
            self.registry.promote(version, f"beats {champion['version']}: {detail}", now)
            return _step("promoted", version, detail, gates)
        weight = self.config.candidate_weight
        experiment = self.experiments.create(
            {
                "name": f"{version} vs {champion['version']}",
                "type": self.config.experiment,
                "arms": [
                    {
                        "name": "control",
                        "model_version": champion["version"],
                        "weight": 100 - weight,
                    },
                    {"name": "candidate", "model_version": version, "weight": weight},
                ],
                "metric": self.config.metric,
                "min_sample_size": self.config.min_sample_size,
            },
            now=now,
        )
        reason = f"{detail}; experiment {experiment['id']} started"
        return {**_step("experimenting", version, reason, gates), "experiment": experiment["id"]}

    def _conclude(self, experiment: dict[str, Any], now: float) -> dict[str, Any]:
        """Act on a running experiment's decision: promote, retire, or keep waiting."""
        status = experiment_status(self.store, experiment, self.config, now)
        decision = status["decision"]
        arm = next(
            (a for a in experiment["arms"] if a["name"] == decision["arm"]), experiment["arms"][-1]
        )
        version = arm.get("model_version")
        verdict, reason = (
            decision["verdict"],
            f"experiment {experiment['id']}: {decision['reason']}",
        )
        expired = now - experiment["created_at"] >= self.config.experiment_max_seconds
        gate = Gate("experiment", None, reason, {"verdict": verdict})
        if verdict in ("collecting", "blocked", "inconclusive") and not expired:
            return _step("waiting", version, reason, [gate])
        promote = verdict in ("treatment_better", "not_worse") or (
            verdict == "collecting" and expired
        )
        if verdict == "collecting":
            reason += "; too little traffic before the deadline, earlier gates decide"
        self.experiments.finish(experiment["id"], reason, decision, status="completed", now=now)
        champion = self.registry.champion()
        if version is None or (champion is not None and version == champion["version"]):
            return _step("kept", version, reason, [gate])
        if promote:
            gate.passed = True
            self.fence()
            self.registry.promote(version, reason, now)
            return _step("promoted", version, reason, [gate])
        gate.passed = False
        self.registry.set_status(version, "retired", reason, now)
        return _step("kept", None if champion is None else champion["version"], reason, [gate])


def _step(action: str, version: str | None, reason: str, gates: list[Gate]) -> dict[str, Any]:
    return {
        "action": action,
        "version": version,
        "reason": reason,
        "gates": [{"name": g.name, "passed": g.passed, "detail": g.detail} for g in gates],
    }


def _entered(registry: Registry, version: str, status: str) -> float:
    """When ``version`` last moved to ``status`` (from the audit log)."""
    times = [
        t["at"] for t in registry.transitions() if t["version"] == version and t["to"] == status
    ]
    return float(times[-1]) if times else 0.0


def _passes(
    store: Store, version: dict[str, Any], cases: list[dict[str, Any]], snapshot: Snapshot, k: int
) -> int:
    """How many regression cases ``version`` passes: a relevant item in its top-k for the user,
    an irrelevant one not."""
    try:
        model = load_model(Path(version["artifact"]))
    except FlywheelError:
        return 0
    n_items = model.n_items
    ev = snapshot.events
    inside = ev.item_idx < n_items
    matrix = build_matrix(
        ev.user_idx[inside],
        ev.item_idx[inside],
        ev.weight[inside],
        ev.timestamp[inside],
        n_users=snapshot.n_users,
        n_items=n_items,
        **version["params"].get("matrix", {}),
    )
    users = store.lookup_ids("users", sorted({c["user_id"] for c in cases}))
    items = store.lookup_ids("items", sorted({c["item_id"] for c in cases}))
    known = sorted({users[c["user_id"]] for c in cases if c["user_id"] in users})
    if not known:
        return 0
    rows = matrix[np.asarray(known)]
    ids, _ = model.recommend(rows, k, exclude=sp.csr_matrix(rows.shape, dtype=np.float32))
    top = {user: set(ids[row].tolist()) for row, user in enumerate(known)}
    passed = 0
    for case in cases:
        user, item = users.get(case["user_id"]), items.get(case["item_id"])
        shown = user in top and item is not None and item in top[user]
        passed += shown == case["relevant"] and user in top
    return passed
