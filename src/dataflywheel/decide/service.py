"""The decision service: rank, reward and activate over named deployments, every rank logged.

Semantics follow Azure Personalizer (docs/decisions.md states them precisely):

- A rank creates an *event* (one *decision* per slot) whose exact probabilities are logged.
- The reward wait clock starts at rank, or at activation for ``defer_activation`` events; a
  deferred event that is not activated within the wait time is never learned (``inactive``).
- ``reward_aggregation="earliest"``: the first reward is learned at once (if the event is
  active), later ones inside the wait are logged, not learned. ``"sum"``: rewards add up and the
  sum is learned when the wait ends.
- An activated decision without a reward when the wait ends learns ``default_reward``.
- A reward after the wait ends is logged (``late_rewards``), not learned, and refused (409).
- ``learning_mode``: ``Online`` explores; ``Apprentice`` serves the baseline (first action not
  excluded) and learns to imitate it, reporting agreement; ``LoggingOnly`` serves the baseline and
  learns nothing.

Any number of processes may serve one store. Each ranks with its own copy of the learner and
logs through :mod:`~dataflywheel.decide.log`; the one holding the learner lease owns learning
(:mod:`~dataflywheel.decide.learning`): it applies rewards with the rules of
:mod:`~dataflywheel.decide.pending`, ends wait times and stamps each learned decision once; the
others forward rewards and activations to the store's inbox (:mod:`~dataflywheel.decide.routing`)
and replay the learned decisions. A lone process is the owner and answers everything from
memory. The background work of a process (heartbeat, settings, inbox, wait times, log writes,
replay, saves) is in :mod:`~dataflywheel.decide.upkeep`; validation in
:mod:`~dataflywheel.decide.requests`.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from dataflywheel.decide.features import JsonCache
from dataflywheel.decide.learning import Learning, default_replica
from dataflywheel.decide.log import DecisionLog, event_rows
from dataflywheel.decide.pending import (
    Decision,
    Deployment,
    Event,
    Learn,
    RankResult,
    log_row,
)
from dataflywheel.decide.requests import (
    DEFAULT_DEPLOYMENT,
    ServiceConfig,
    as_list,
    catalogue,
    check_event_id,
    check_name,
    check_reward,
    excluded_ids,
    slot_specs,
)
from dataflywheel.decide.routing import Router
from dataflywheel.decide.settings import Settings
from dataflywheel.decide.tables import decisions, deployments
from dataflywheel.decide.upkeep import Upkeep
from dataflywheel.errors import ConflictError, ValidationError
from dataflywheel.store.store import Store

__all__ = ["DEFAULT_DEPLOYMENT", "DecisionService", "Deployment", "RankResult", "ServiceConfig"]


class DecisionService:
    """Rank, reward and activate over named deployments (``default`` always exists).

    ``replica`` names this process among those sharing the store (host and process id by
    default, so a service restarted in the same process takes its lease straight back)."""

    def __init__(
        self,
        store: Store,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
        replica: str | None = None,
    ) -> None:
        self.store = store
        self.directory = Path(directory)
        self.clock = clock
        self.log = DecisionLog(store)
        self.learning = Learning(store, self.directory, replica or default_replica())
        self._deployments: dict[str, Deployment] = {}
        self._lock = threading.Lock()
        self._ids: list[str] = []
        self._catalogue = JsonCache(catalogue, private=True)
        self._stop = threading.Event()
        self.router = Router(self)
        self.settings = Settings(self)
        self.upkeep = Upkeep(self)
        self.upkeep.start()

    # Deployments -----------------------------------------------------------------------------

    def deployment(self, name: str = DEFAULT_DEPLOYMENT) -> Deployment:
        """The named deployment, loaded on first use; only ``default`` is created implicitly."""
        dep = self._deployments.get(name)
        if dep is not None:
            return dep
        with self._lock:
            dep = self._deployments.get(name)
            if dep is None:
                dep = self.settings.load(name, create=name == DEFAULT_DEPLOYMENT)
                self._deployments[name] = dep
            return dep

    def loaded(self) -> list[Deployment]:
        return list(self._deployments.values())

    def configure(
        self,
        name: str = DEFAULT_DEPLOYMENT,
        *,
        service: Mapping[str, Any] | None = None,
        learner: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or change a deployment; new learner settings start a fresh learner. Every
        replica applies the stored change within ``upkeep.SYNC_SECONDS``."""
        check_name(name)
        with self._lock:
            dep = self._deployments.get(name) or self.settings.load(name, create=True)
            self._deployments[name] = dep
        self.settings.configure(dep, service, learner)
        return self.status(name)

    def status(self, name: str = DEFAULT_DEPLOYMENT) -> dict[str, Any]:
        """Settings, counters and apprentice agreement of a deployment."""
        dep = self.deployment(name)
        with dep.lock:
            state = dep.learner.state
            apprentice = dep.apprentice
            low, high = apprentice.learner_reward_bounds
            status = {
                "deployment": dep.name,
                "learner": dep.learner.config.to_dict(),
                "service": asdict(dep.service),
                "ranks": state.ranks,
                "learned": state.learns,
                "mean_learned_reward": state.mean_reward,
                "pending_events": len(dep.pending),
                "owner": self.learning.owner,
                "apprentice": {
                    "rounds": apprentice.rounds,
                    "agreement": apprentice.agreement,
                    "baseline_reward": apprentice.baseline_reward,
                    "learner_reward_low": low,
                    "learner_reward_high": high,
                    "ready": apprentice.ready(),
                },
            }
        if not self.learning.owner:
            status["pending_events"] = self._pending_in_store(name)
        return status

    def names(self) -> list[str]:
        with self.store.read() as conn:
            stored = conn.execute(select(deployments.c.name)).scalars().all()
        return sorted({DEFAULT_DEPLOYMENT, *stored})

    # Rank ------------------------------------------------------------------------------------

    def rank(
        self,
        context: Any,
        actions: Any,
        *,
        excluded: Sequence[str] | None = None,
        event_id: str | None = None,
        defer_activation: bool = False,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> RankResult:
        """Rank ``actions`` for ``context``; excluded actions come last with probability 0."""
        now = self.clock()
        dep = self.deployment(deployment)
        ids, actions = self._catalogue(actions)
        skip = excluded_ids(excluded, ids, "excludedActions")
        if skip:
            candidates = [a for a, i in zip(actions, ids, strict=True) if i not in skip]
        else:
            candidates = list(actions)
        if not candidates:
            raise ValidationError("every action is excluded", field="excludedActions")
        event_id = self._new_event_id(dep, event_id)
        with dep.lock:
            self.upkeep.expire(dep, now)
            decision, ranking = self._decide(dep, "", context, candidates, defer_activation, now)
            self._open(dep, event_id, False, [decision], defer_activation, now)
        by_id = {a["id"]: p for a, p in zip(candidates, decision.probabilities, strict=True)}
        order = [(a, by_id[a]) for a in ranking] + [(i, 0.0) for i in ids if i in skip]
        return RankResult(event_id, order, decision.chosen_id)

    def rank_multislot(
        self,
        context: Any,
        actions: Any,
        slots: Any,
        *,
        event_id: str | None = None,
        defer_activation: bool = False,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> tuple[str, list[tuple[str, str]]]:
        """Fill each slot in order with a different action; returns ``(event id, [(slot,
        action)])``. A slot's candidates are the actions not yet taken, led by its baseline
        action when that is still free; the slot's id and features join the context."""
        now = self.clock()
        dep = self.deployment(deployment)
        ids, actions = self._catalogue(actions)
        specs = slot_specs(slots, ids)
        event_id = self._new_event_id(dep, event_id)
        taken: set[str] = set()
        made: list[Decision] = []
        with dep.lock:
            self.upkeep.expire(dep, now)
            for slot_id, baseline, skip, features in specs:
                free = [a for a, i in zip(actions, ids, strict=True) if i not in skip | taken]
                if not free:
                    raise ValidationError(f"slot {slot_id!r} has no action left", field="slots")
                candidates = sorted(free, key=lambda a: a["id"] != baseline)
                slot_context = [*as_list(context), {"_slot": slot_id}, *features]
                decision, _ = self._decide(
                    dep, slot_id, slot_context, candidates, defer_activation, now
                )
                taken.add(decision.chosen_id)
                made.append(decision)
            self._open(dep, event_id, True, made, defer_activation, now)
        return event_id, [(d.slot_id, d.chosen_id) for d in made]

    def _decide(
        self,
        dep: Deployment,
        slot_id: str,
        context: Any,
        candidates: list[Any],
        deferred: bool,
        now: float,
    ) -> tuple[Decision, tuple[str, ...]]:
        mode = dep.service.learning_mode
        ranking = dep.ranker(mode).rank(context, candidates)
        decision = Decision(
            slot_id,
            mode,
            context,
            candidates,
            ranking.chosen_index,
            ranking.probabilities,
            None if deferred else now,
            encoding=ranking.encoding,
        )
        return decision, ranking.action_ids

    def _new_event_id(self, dep: Deployment, event_id: str | None) -> str:
        if event_id is None:
            try:
                return self._ids.pop()
            except IndexError:
                # Random ids drawn 256 at a time: one system call instead of one per rank.
                pool = os.urandom(16 * 256).hex()
                self._ids = [pool[i : i + 32] for i in range(32, len(pool), 32)]
                return pool[:32]
        check_event_id(event_id)
        if event_id in dep.pending or event_rows(self.store, dep.name, event_id):
            raise ConflictError(f"event {event_id!r} already exists", field="eventId")
        return event_id

    def _open(
        self,
        dep: Deployment,
        event_id: str,
        multislot: bool,
        made: list[Decision],
        deferred: bool,
        now: float,
    ) -> None:
        """Hold the event in memory until its wait time ends and queue its log rows."""
        if event_id in dep.pending:
            raise ConflictError(f"event {event_id!r} already exists", field="eventId")
        deadline = now + dep.service.reward_wait_seconds
        event = Event(event_id, multislot, deadline, {d.slot_id: d for d in made}, not deferred)
        dep.open(event)
        self.log.insert([log_row(dep.name, event, d, deferred, now) for d in made])

    # Reward and activate ---------------------------------------------------------------------

    def reward(
        self,
        event_id: str,
        value: Any,
        *,
        slot_id: str | None = None,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        """Record a reward in [-1, 1] for the event's served action (of ``slot_id``)."""
        self.reward_slots(event_id, [(slot_id, check_reward(value))], deployment=deployment)

    def reward_slots(
        self,
        event_id: str,
        values: Sequence[tuple[str | None, float]],
        *,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        """Rewards per slot (``None`` = the single slot of a single-slot event)."""
        self.router.touch(event_id, values, None, deployment)

    def activate(
        self,
        event_id: str,
        *,
        multislot: bool = False,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        """Mark a deferred event as used: its wait time starts now and it will be learned."""
        self.router.touch(event_id, None, multislot, deployment)

    def learner_of(self, dep: Deployment) -> Learn:
        """The owner's learn callback for ``dep``."""

        def learn(decision: Decision, reward: float, at: float, outcome: str) -> None:
            Learning.learn(dep, decision, reward, at, outcome)

        return learn

    def _pending_in_store(self, name: str) -> int:
        c = decisions.c
        with self.store.read() as conn:
            count = conn.execute(
                select(func.count(func.distinct(c.event_id))).where(
                    c.deployment == name, c.outcome == "pending"
                )
            ).scalar_one()
        return int(count)

    # Background work and shutdown ------------------------------------------------------------

    def sweep(self) -> None:
        """End the wait time of every event whose deadline has passed, in every deployment."""
        self.upkeep.sweep(self.clock())

    def flush(self) -> None:
        """Write every queued log row and update (the background thread does it every 50 ms)."""
        self.upkeep.flush()

    def save(self) -> None:
        """Save every deployment's learner (the owner only; atomically replacing the last)."""
        self.upkeep.save_all()

    def close(self) -> None:
        """Stop the background thread, write the log, save the learners, release the leases."""
        self.upkeep.stop()
        self.flush()
        self.save()
        self.learning.release()
