"""The decision service: a contextual-bandit learner per deployment, every rank logged in the store.

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

Ranks and rewards are answered from memory; a background thread writes the log in batches,
applies expired wait times and saves each learner to ``artifacts/decisions/NAME/`` once a
minute and on close. On start a learner is reloaded and the logged rewards learned after its
last save are learned again, so a crash loses at most the log's last unwritten batch.
"""

from __future__ import annotations

import heapq
import json
import logging
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from sqlalchemy import and_, bindparam, select, update

from dataflywheel.decide.apprentice import Apprentice
from dataflywheel.decide.features import JsonCache, check_action_count
from dataflywheel.decide.learner import (
    Encoding,
    Learner,
    LearnerConfig,
    create_learner,
    load_learner,
)
from dataflywheel.decide.tables import decisions, deployments
from dataflywheel.errors import ConflictError, NotFoundError, ValidationError
from dataflywheel.store.store import Store, dialect_insert

log = logging.getLogger(__name__)

DEFAULT_DEPLOYMENT = "default"
MODES = ("Online", "Apprentice", "LoggingOnly")
AGGREGATIONS = ("earliest", "sum")
MIN_WAIT_SECONDS = 5.0
MAX_WAIT_SECONDS = 2 * 86_400.0
TICK_SECONDS = 0.05
SAVE_SECONDS = 60.0
CHECKPOINT_FILE = "checkpoint.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_MUTABLE = (
    "activated_at",
    "reward",
    "reward_at",
    "rewards",
    "outcome",
    "learned_at",
    "learned_seq",
)


@dataclass(frozen=True)
class ServiceConfig:
    """A deployment's Personalizer-style service configuration, validated."""

    reward_wait_seconds: float = 600.0
    default_reward: float = 0.0
    reward_aggregation: str = "earliest"
    learning_mode: str = "Online"

    def __post_init__(self) -> None:
        wait = self.reward_wait_seconds
        if not _number(wait) or not MIN_WAIT_SECONDS <= wait <= MAX_WAIT_SECONDS:
            raise ValidationError(
                f"reward wait time must be {MIN_WAIT_SECONDS:g} s to {MAX_WAIT_SECONDS:g} s",
                field="rewardWaitTime",
            )
        if not _number(self.default_reward) or not -1.0 <= self.default_reward <= 1.0:
            raise ValidationError("defaultReward must be in [-1, 1]", field="defaultReward")
        if self.reward_aggregation not in AGGREGATIONS:
            raise ValidationError(
                f"rewardAggregation must be one of {', '.join(AGGREGATIONS)}",
                field="rewardAggregation",
            )
        if self.learning_mode not in MODES:
            raise ValidationError(
                f"learningMode must be one of {', '.join(MODES)}", field="learningMode"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ServiceConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValidationError(
                f"unknown service setting {sorted(unknown)[0]!r}", field="service"
            )
        return cls(**dict(values))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(slots=True)
class Decision:
    """One slot of an event: what was served, with which probability, and what became of it."""

    slot_id: str
    mode: str
    context: Any
    actions: list[Any]
    chosen: int
    probabilities: tuple[float, ...]
    activated_at: float | None
    reward: float | None = None
    reward_at: float | None = None
    rewards: int = 0
    outcome: str = "pending"
    learned_at: float | None = None
    learned_seq: int | None = None
    encoding: Encoding | None = None
    """The learner's encoding of the request, kept until the decision is learned (not logged)."""

    @property
    def probability(self) -> float:
        return self.probabilities[self.chosen]

    @property
    def chosen_id(self) -> str:
        chosen: str = self.actions[self.chosen]["id"]
        return chosen


@dataclass(slots=True)
class Event:
    """A rank call waiting for rewards until ``deadline``."""

    event_id: str
    multislot: bool
    deadline: float
    decisions: dict[str, Decision]
    activated: bool


@dataclass(frozen=True)
class RankResult:
    """The answer to a rank: the ranking ``[(action id, probability)]`` and the served action."""

    event_id: str
    ranking: list[tuple[str, float]]
    reward_action_id: str


@dataclass
class Deployment:
    """One learner with its configuration, its pending events and its deadlines."""

    name: str
    learner: Learner
    service: ServiceConfig
    apprentice: Apprentice
    pending: dict[str, Event] = field(default_factory=dict)
    deadlines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: int = 0
    saved_sequence: int = 0


class DecisionService:
    """Rank, reward and activate over named deployments (``default`` always exists)."""

    def __init__(
        self, store: Store, directory: Path, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.directory = Path(directory)
        self.clock = clock
        self._deployments: dict[str, Deployment] = {}
        self._lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._inserts: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._updates: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._ids: list[str] = []
        self._catalogue = JsonCache(_catalogue, private=True)
        self._saved_at = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self._thread.start()

    # Deployments -----------------------------------------------------------------------------

    def deployment(self, name: str = DEFAULT_DEPLOYMENT) -> Deployment:
        """The named deployment, loaded on first use; only ``default`` is created implicitly."""
        dep = self._deployments.get(name)
        if dep is not None:
            return dep
        with self._lock:
            dep = self._deployments.get(name)
            if dep is None:
                dep = self._load(name, create=name == DEFAULT_DEPLOYMENT)
                self._deployments[name] = dep
            return dep

    def configure(
        self,
        name: str = DEFAULT_DEPLOYMENT,
        *,
        service: Mapping[str, Any] | None = None,
        learner: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Create or change a deployment; new learner settings start a fresh learner."""
        _check_name(name)
        with self._lock:
            dep = self._deployments.get(name) or self._load(name, create=True)
            self._deployments[name] = dep
        with dep.lock:
            if service is not None:
                merged = {**asdict(dep.service), **service}
                dep.service = ServiceConfig.from_dict(merged)
            if learner is not None:
                config = LearnerConfig.from_dict(learner)
                if config != dep.learner.config:
                    dep.learner = create_learner(config)
                    dep.apprentice = Apprentice(dep.learner)
                    self._save(dep)
            self._write_deployment(dep, time.time())
        return self.status(name)

    def status(self, name: str = DEFAULT_DEPLOYMENT) -> dict[str, Any]:
        """Settings, counters and apprentice agreement of a deployment."""
        dep = self.deployment(name)
        with dep.lock:
            state = dep.learner.state
            apprentice = dep.apprentice
            low, high = apprentice.learner_reward_bounds
            return {
                "deployment": dep.name,
                "learner": dep.learner.config.to_dict(),
                "service": asdict(dep.service),
                "ranks": state.ranks,
                "learned": state.learns,
                "mean_learned_reward": state.mean_reward,
                "pending_events": len(dep.pending),
                "apprentice": {
                    "rounds": apprentice.rounds,
                    "agreement": apprentice.agreement,
                    "baseline_reward": apprentice.baseline_reward,
                    "learner_reward_low": low,
                    "learner_reward_high": high,
                    "ready": apprentice.ready(),
                },
            }

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
        skip = _excluded(excluded, ids, "excludedActions")
        if skip:
            candidates = [a for a, i in zip(actions, ids, strict=True) if i not in skip]
        else:
            candidates = list(actions)
        if not candidates:
            raise ValidationError("every action is excluded", field="excludedActions")
        event_id = self._new_event_id(dep, event_id)
        with dep.lock:
            self._sweep(dep, now)
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
        specs = _slots(slots, ids)
        event_id = self._new_event_id(dep, event_id)
        taken: set[str] = set()
        made: list[Decision] = []
        with dep.lock:
            self._sweep(dep, now)
            for slot_id, baseline, skip, features in specs:
                free = [a for a, i in zip(actions, ids, strict=True) if i not in skip | taken]
                if not free:
                    raise ValidationError(f"slot {slot_id!r} has no action left", field="slots")
                candidates = sorted(free, key=lambda a: a["id"] != baseline)
                slot_context = [*_as_list(context), {"_slot": slot_id}, *features]
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
        ranker = dep.learner if mode == "Online" else dep.apprentice
        ranking = ranker.rank(context, candidates)
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
        if not isinstance(event_id, str) or not 1 <= len(event_id) <= 256:
            raise ValidationError(
                "eventId must be a string of 1 to 256 characters", field="eventId"
            )
        if event_id in dep.pending or self._logged(dep.name, event_id):
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
        dep.pending[event_id] = Event(
            event_id, multislot, deadline, {d.slot_id: d for d in made}, not deferred
        )
        heapq.heappush(dep.deadlines, (deadline, event_id))
        rows = {
            (dep.name, event_id, d.slot_id): {
                "deployment": dep.name,
                "event_id": event_id,
                "slot_id": d.slot_id,
                "ts": now,
                "mode": d.mode,
                "request": {"context": d.context, "actions": d.actions},
                "action_ids": [a["id"] for a in d.actions],
                "probabilities": list(d.probabilities),
                "chosen_index": d.chosen,
                "chosen_id": d.chosen_id,
                "deferred": deferred,
                "activated_at": d.activated_at,
                "reward": None,
                "reward_at": None,
                "rewards": 0,
                "late_rewards": 0,
                "outcome": "pending",
                "learned_at": None,
                "learned_seq": None,
            }
            for d in made
        }
        with self._queue_lock:
            self._inserts.update(rows)

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
        if not _number(value) or not -1.0 <= value <= 1.0:
            raise ValidationError("reward value must be a number in [-1, 1]", field="value")
        self.reward_slots(event_id, [(slot_id, float(value))], deployment=deployment)

    def reward_slots(
        self,
        event_id: str,
        values: Sequence[tuple[str | None, float]],
        *,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        """Rewards per slot (``None`` = the single slot of a single-slot event)."""
        now = self.clock()
        dep = self.deployment(deployment)
        with dep.lock:
            self._sweep(dep, now)
            event = dep.pending.get(event_id)
            if event is not None:
                targets = [(self._slot(event, slot), value) for slot, value in values]
                for decision, value in targets:
                    self._add_reward(dep, event, decision, value, now)
                self._queue_updates(dep, event_id, [d for d, _ in targets])
                return
        self._late(dep.name, event_id, [slot or "" for slot, _ in values], count=True)

    def activate(
        self,
        event_id: str,
        *,
        multislot: bool = False,
        deployment: str = DEFAULT_DEPLOYMENT,
    ) -> None:
        """Mark a deferred event as used: its wait time starts now and it will be learned."""
        now = self.clock()
        dep = self.deployment(deployment)
        with dep.lock:
            self._sweep(dep, now)
            event = dep.pending.get(event_id)
            if event is not None:
                _check_kind(event, multislot)
                if event.activated:
                    return
                event.activated = True
                event.deadline = now + dep.service.reward_wait_seconds
                heapq.heappush(dep.deadlines, (event.deadline, event_id))
                for decision in event.decisions.values():
                    decision.activated_at = now
                    if decision.reward is not None and dep.service.reward_aggregation == "earliest":
                        self._learn(dep, decision, decision.reward, now, "rewarded")
                self._queue_updates(dep, event_id, list(event.decisions.values()))
                return
        self._late(dep.name, event_id, None, count=False)

    def _slot(self, event: Event, slot_id: str | None) -> Decision:
        _check_kind(event, slot_id is not None)
        decision = event.decisions.get(slot_id or "")
        if decision is None:
            raise NotFoundError(f"event {event.event_id!r} has no slot {slot_id!r}", field="slotId")
        return decision

    def _add_reward(
        self, dep: Deployment, event: Event, decision: Decision, value: float, now: float
    ) -> None:
        decision.rewards += 1
        if dep.service.reward_aggregation == "sum":
            decision.reward = (decision.reward or 0.0) + value
            decision.reward_at = now
            return
        if decision.reward is None:
            decision.reward = value
            decision.reward_at = now
            if event.activated:
                self._learn(dep, decision, value, now, "rewarded")

    def _learn(
        self, dep: Deployment, decision: Decision, reward: float, now: float, outcome: str
    ) -> None:
        decision.outcome = outcome
        if decision.mode == "LoggingOnly":
            return
        learner = dep.apprentice if decision.mode == "Apprentice" else dep.learner
        learner.learn(
            decision.context,
            decision.actions,
            decision.chosen,
            decision.probability,
            reward,
            encoding=decision.encoding,
        )
        decision.encoding = None
        dep.sequence += 1
        decision.learned_at = now
        decision.learned_seq = dep.sequence

    def _late(self, name: str, event_id: str, slots: Sequence[str] | None, *, count: bool) -> None:
        """The event is not in memory: refuse a late call (logging late rewards) or say unknown."""
        self.flush()
        c = decisions.c
        where = and_(c.deployment == name, c.event_id == event_id)
        if slots is not None:
            where = and_(where, c.slot_id.in_(slots))
        with self.store.write() as conn:
            found = conn.execute(select(c.slot_id, c.outcome).where(where)).all()
            if found and count:
                conn.execute(update(decisions).where(where).values(late_rewards=c.late_rewards + 1))
        if not found:
            raise NotFoundError(f"unknown event {event_id!r}", field="eventId")
        what = "the reward is logged, not learned" if count else "it can no longer be activated"
        raise ConflictError(
            f"event {event_id!r} ended its reward wait time ({found[0].outcome}); {what}",
            field="eventId",
        )

    # Wait times --------------------------------------------------------------------------------

    def sweep(self) -> None:
        """End the wait time of every event whose deadline has passed, in every deployment."""
        now = self.clock()
        for dep in list(self._deployments.values()):
            with dep.lock:
                self._sweep(dep, now)

    def _sweep(self, dep: Deployment, now: float) -> None:
        """Learn default or summed rewards for expired events and drop them from memory."""
        heap = dep.deadlines
        while heap and heap[0][0] <= now:
            deadline, event_id = heapq.heappop(heap)
            event = dep.pending.get(event_id)
            if event is None or event.deadline != deadline:
                continue
            del dep.pending[event_id]
            for decision in event.decisions.values():
                if not event.activated:
                    decision.outcome = "inactive"
                elif decision.reward is None:
                    self._learn(dep, decision, dep.service.default_reward, deadline, "default")
                elif decision.learned_at is None and decision.outcome == "pending":
                    self._learn(dep, decision, decision.reward, deadline, "rewarded")
            self._queue_updates(dep, event_id, list(event.decisions.values()))

    # The log and the learner files -------------------------------------------------------------

    def _queue_updates(self, dep: Deployment, event_id: str, made: Sequence[Decision]) -> None:
        """Queue the decisions' new state; a row still waiting to be inserted takes it directly,
        so a rank rewarded within one batch is written once."""
        with self._queue_lock:
            for d in made:
                values = {name: getattr(d, name) for name in _MUTABLE}
                key = (dep.name, event_id, d.slot_id)
                row = self._inserts.get(key)
                if row is None:
                    self._updates[key] = values
                else:
                    row.update(values)

    def flush(self) -> None:
        """Write every queued log row and update (called by the background thread and on
        demand)."""
        with self._queue_lock:
            inserts, self._inserts = self._inserts, {}
            updates, self._updates = self._updates, {}
        if not inserts and not updates:
            return
        c = decisions.c
        try:
            with self.store.write() as conn:
                if inserts:
                    statement = dialect_insert(conn, decisions).on_conflict_do_nothing(
                        index_elements=["deployment", "event_id", "slot_id"]
                    )
                    conn.execute(statement, list(inserts.values()))
                if updates:
                    conn.execute(
                        update(decisions)
                        .where(
                            c.deployment == bindparam("k_deployment"),
                            c.event_id == bindparam("k_event"),
                            c.slot_id == bindparam("k_slot"),
                        )
                        .values({name: bindparam(name) for name in _MUTABLE}),
                        [
                            {"k_deployment": d, "k_event": e, "k_slot": s, **values}
                            for (d, e, s), values in updates.items()
                        ],
                    )
        except Exception:
            log.exception("decision log write failed; retrying")
            with self._queue_lock:
                self._inserts = {**inserts, **self._inserts}
                self._updates = {**updates, **self._updates}
            raise

    def save(self) -> None:
        """Save every deployment's learner (atomically replacing the previous save)."""
        for dep in list(self._deployments.values()):
            with dep.lock:
                self._save(dep)

    def _save(self, dep: Deployment) -> None:
        target = self.directory / dep.name
        fresh = target.with_name(dep.name + ".new")
        old = target.with_name(dep.name + ".old")
        shutil.rmtree(fresh, ignore_errors=True)
        dep.learner.save(fresh)
        (fresh / CHECKPOINT_FILE).write_text(json.dumps({"sequence": dep.sequence}))
        shutil.rmtree(old, ignore_errors=True)
        if target.exists():
            target.rename(old)
        fresh.rename(target)
        shutil.rmtree(old, ignore_errors=True)
        dep.saved_sequence = dep.sequence

    def close(self) -> None:
        """Stop the background thread, write the log and save every learner."""
        self._stop.set()
        self._thread.join()
        self.flush()
        self.save()

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.sweep()
                self.flush()
                if time.monotonic() - self._saved_at >= SAVE_SECONDS:
                    self._saved_at = time.monotonic()
                    for dep in list(self._deployments.values()):
                        if dep.sequence != dep.saved_sequence:
                            with dep.lock:
                                self._save(dep)
            except Exception:
                log.exception("decision service tick failed")

    # Loading -----------------------------------------------------------------------------------

    def _logged(self, name: str, event_id: str) -> bool:
        c = decisions.c
        with self.store.read() as conn:
            row = conn.execute(
                select(c.id).where(c.deployment == name, c.event_id == event_id).limit(1)
            ).first()
        return row is not None

    def _load(self, name: str, *, create: bool) -> Deployment:
        """Read a deployment's settings, its saved learner, relearn since the save, and
        restore its pending events."""
        with self.store.read() as conn:
            row = conn.execute(select(deployments).where(deployments.c.name == name)).first()
        if row is None and not create:
            raise NotFoundError(f"unknown deployment {name!r}", field="deployment")
        config = LearnerConfig.from_dict(row.learner if row else {})
        service = ServiceConfig.from_dict(row.service if row else {})
        path = self.directory / name
        saved = 0
        if (path / CHECKPOINT_FILE).is_file():
            learner = load_learner(path)
            saved = int(json.loads((path / CHECKPOINT_FILE).read_text())["sequence"])
        else:
            learner = create_learner(config)
        dep = Deployment(name, learner, service, Apprentice(learner))
        dep.sequence = dep.saved_sequence = saved
        if row is None:
            self._write_deployment(dep, time.time())
        self._restore(dep)
        return dep

    def _restore(self, dep: Deployment) -> None:
        """Learn again what was learned after the saved learner, and reopen pending events."""
        c = decisions.c
        with self.store.read() as conn:
            relearn = conn.execute(
                select(decisions)
                .where(c.deployment == dep.name, c.learned_seq > dep.sequence)
                .order_by(c.learned_seq)
            ).all()
            pending = conn.execute(
                select(decisions)
                .where(c.deployment == dep.name, c.outcome == "pending")
                .order_by(c.id)
            ).all()
        for r in relearn:
            learner = dep.apprentice if r.mode == "Apprentice" else dep.learner
            req = r.request
            learner.learn(
                req["context"],
                req["actions"],
                r.chosen_index,
                r.probabilities[r.chosen_index],
                r.reward if r.reward is not None else dep.service.default_reward,
            )
            dep.sequence = r.learned_seq
        wait = dep.service.reward_wait_seconds
        for r in pending:
            req = r.request
            decision = Decision(
                r.slot_id,
                r.mode,
                req["context"],
                req["actions"],
                r.chosen_index,
                tuple(r.probabilities),
                r.activated_at,
                r.reward,
                r.reward_at,
                r.rewards,
                r.outcome,
                r.learned_at,
            )
            event = dep.pending.get(r.event_id)
            if event is None:
                start = r.activated_at if r.activated_at is not None else r.ts
                event = Event(
                    r.event_id, r.slot_id != "", start + wait, {}, r.activated_at is not None
                )
                dep.pending[r.event_id] = event
                heapq.heappush(dep.deadlines, (event.deadline, r.event_id))
            event.decisions[r.slot_id] = decision

    def _write_deployment(self, dep: Deployment, now: float) -> None:
        with self.store.write() as conn:
            statement = dialect_insert(conn, deployments).values(
                name=dep.name,
                learner=dep.learner.config.to_dict(),
                service=asdict(dep.service),
                created_at=now,
                updated_at=now,
            )
            conn.execute(
                statement.on_conflict_do_update(
                    index_elements=["name"],
                    set_={
                        "learner": statement.excluded.learner,
                        "service": statement.excluded.service,
                        "updated_at": statement.excluded.updated_at,
                    },
                )
            )


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            "deployment names are 1-64 letters, digits, '_' or '-'", field="deployment"
        )


def _check_kind(event: Event, multislot: bool) -> None:
    if event.multislot != multislot:
        kind = "multi-slot" if event.multislot else "single-slot"
        raise ValidationError(
            f"event {event.event_id!r} is {kind}; use the {kind} endpoint", field="eventId"
        )


def _as_list(context: Any) -> list[Any]:
    if context is None:
        return []
    return list(context) if isinstance(context, list | tuple) else [context]


def _catalogue(actions: Any) -> tuple[tuple[str, ...], Sequence[Any]]:
    """Validated ids of an action list, and the list. Built from the cache's private copy, so
    the pending decisions of every rank with the same actions share one copy of them (rank
    rate × wait time decisions are held in memory)."""
    return _action_ids(actions), actions


def _action_ids(actions: Any) -> tuple[str, ...]:
    """Ids of a list of 1..50 actions; full feature validation happens in the learner."""
    check_action_count(actions)
    ids = []
    for i, action in enumerate(actions):
        action_id = action.get("id") if isinstance(action, Mapping) else None
        if not isinstance(action_id, str) or not action_id:
            raise ValidationError(f"actions[{i}].id must be a non-empty string", field="actions")
        ids.append(action_id)
    if len(set(ids)) != len(ids):
        raise ValidationError("action ids must be unique", field="actions")
    return tuple(ids)


def _excluded(excluded: Any, ids: Sequence[str], where: str) -> set[str]:
    if excluded is None:
        return set()
    if not isinstance(excluded, list | tuple) or not all(isinstance(e, str) for e in excluded):
        raise ValidationError(f"{where} must be a list of action ids", field=where)
    unknown = set(excluded) - set(ids)
    if unknown:
        raise ValidationError(f"{where} names unknown action {sorted(unknown)[0]!r}", field=where)
    return set(excluded)


def _slots(slots: Any, ids: Sequence[str]) -> list[tuple[str, str, set[str], list[Any]]]:
    """Validate multi-slot ``slots``: (id, baseline action, excluded ids, features) each."""
    if not isinstance(slots, list) or not 1 <= len(slots) <= len(ids):
        raise ValidationError("slots must be a list of 1 to len(actions) slots", field="slots")
    out = []
    seen: set[str] = set()
    baselines: set[str] = set()
    for i, slot in enumerate(slots):
        where = f"slots[{i}]"
        if not isinstance(slot, Mapping):
            raise ValidationError(f"{where} must be an object", field=where)
        slot_id, baseline = slot.get("id"), slot.get("baselineAction")
        if not isinstance(slot_id, str) or not slot_id or slot_id in seen:
            raise ValidationError(f"{where}.id must be a unique non-empty string", field=where)
        if not isinstance(baseline, str) or baseline not in ids or baseline in baselines:
            raise ValidationError(
                f"{where}.baselineAction must be a distinct action id", field=where
            )
        skip = _excluded(slot.get("excludedActions"), ids, f"{where}.excludedActions")
        if baseline in skip:
            raise ValidationError(f"{where} excludes its own baseline action", field=where)
        features = slot.get("features") or []
        if not isinstance(features, list):
            raise ValidationError(f"{where}.features must be a list of objects", field=where)
        seen.add(slot_id)
        baselines.add(baseline)
        out.append((slot_id, baseline, skip, features))
    return out
