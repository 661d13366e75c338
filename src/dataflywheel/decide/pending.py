"""Events waiting for rewards: decisions, deadlines and Personalizer's aggregation rules.

Only the process that owns learning (see :mod:`dataflywheel.decide.learning`) applies rewards
here; other replicas keep their own events as light records, to answer callers at once, and
forward what they receive to the store's inbox. ``learn`` callbacks carry the learning itself,
so this module holds the rules and nothing about learners or the log.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dataflywheel.decide.apprentice import Apprentice
from dataflywheel.decide.learner import Encoding, Learner
from dataflywheel.decide.requests import ServiceConfig, check_kind
from dataflywheel.errors import NotFoundError

Learn = Callable[["Decision", float, float, str], None]
"""``learn(decision, reward, at, outcome)``: learn a decision and record its outcome."""


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

    def slot(self, slot_id: str | None) -> Decision:
        check_kind(self.event_id, self.multislot, slot_id is not None)
        decision = self.decisions.get(slot_id or "")
        if decision is None:
            raise NotFoundError(f"event {self.event_id!r} has no slot {slot_id!r}", field="slotId")
        return decision


@dataclass(frozen=True)
class RankResult:
    """The answer to a rank: the ranking ``[(action id, probability)]`` and the served action."""

    event_id: str
    ranking: list[tuple[str, float]]
    reward_action_id: str


@dataclass
class Deployment:
    """One learner with its configuration, its pending events and its deadlines.

    ``sequence`` is the last learned decision this learner holds (the log's ``learned_seq``),
    ``learner_seq`` the sequence it started from (None while a new learner waits for the owner
    to say where it starts) and ``revision`` the stored settings it reflects."""

    name: str
    learner: Learner
    service: ServiceConfig
    apprentice: Apprentice
    pending: dict[str, Event] = field(default_factory=dict)
    deadlines: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    sequence: int = 0
    saved_sequence: int = 0
    learner_seq: int | None = 0
    revision: int = 0

    def ranker(self, mode: str) -> Learner | Apprentice:
        return self.learner if mode == "Online" else self.apprentice

    def open(self, event: Event) -> None:
        self.pending[event.event_id] = event
        heapq.heappush(self.deadlines, (event.deadline, event.event_id))

    def reschedule(self, event: Event) -> None:
        """The event's deadline moved (activation); the old heap entry is skipped."""
        heapq.heappush(self.deadlines, (event.deadline, event.event_id))

    def expired(self, until: float) -> list[Event]:
        """Remove and return the events whose wait time ended by ``until``."""
        heap, ended = self.deadlines, []
        while heap and heap[0][0] <= until:
            deadline, event_id = heapq.heappop(heap)
            event = self.pending.get(event_id)
            if event is not None and event.deadline == deadline:
                del self.pending[event_id]
                ended.append(event)
        return ended


def add_reward(
    service: ServiceConfig, event: Event, decision: Decision, value: float, at: float, learn: Learn
) -> None:
    """One reward: ``earliest`` learns the first at once (once active), ``sum`` adds up."""
    decision.rewards += 1
    if service.reward_aggregation == "sum":
        decision.reward = (decision.reward or 0.0) + value
        decision.reward_at = at
        return
    if decision.reward is None:
        decision.reward = value
        decision.reward_at = at
        if event.activated:
            learn(decision, value, at, "rewarded")


def activate(service: ServiceConfig, event: Event, at: float, learn: Learn) -> None:
    """Start the wait of a deferred event; an ``earliest`` reward received before is learned."""
    event.activated = True
    event.deadline = at + service.reward_wait_seconds
    for decision in event.decisions.values():
        decision.activated_at = at
        if decision.reward is not None and service.reward_aggregation == "earliest":
            learn(decision, decision.reward, at, "rewarded")


def finish(service: ServiceConfig, event: Event, learn: Learn) -> None:
    """The wait ended: learn the default or summed reward; an inactive event learns nothing."""
    for decision in event.decisions.values():
        if not event.activated:
            decision.outcome = "inactive"
        elif decision.reward is None:
            learn(decision, service.default_reward, event.deadline, "default")
        elif decision.learned_at is None and decision.outcome == "pending":
            learn(decision, decision.reward, event.deadline, "rewarded")


def event_from_rows(rows: Sequence[Any], wait: float) -> Event:
    """An event rebuilt from its log rows (one per slot), as the owner adopts it."""
    first = rows[0]
    start = first.activated_at if first.activated_at is not None else first.ts
    deadline = first.deadline if first.deadline is not None else start + wait
    event = Event(first.event_id, first.slot_id != "", deadline, {}, first.activated_at is not None)
    for r in rows:
        req = r.request
        event.decisions[r.slot_id] = Decision(
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
    return event


def log_row(
    name: str, event: Event, decision: Decision, deferred: bool, now: float
) -> dict[str, Any]:
    """The decision log row of a new decision."""
    return {
        "deployment": name,
        "event_id": event.event_id,
        "slot_id": decision.slot_id,
        "ts": now,
        "mode": decision.mode,
        "request": {"context": decision.context, "actions": decision.actions},
        "action_ids": [a["id"] for a in decision.actions],
        "probabilities": list(decision.probabilities),
        "chosen_index": decision.chosen,
        "chosen_id": decision.chosen_id,
        "deferred": deferred,
        "activated_at": decision.activated_at,
        "reward": None,
        "reward_at": None,
        "rewards": 0,
        "late_rewards": 0,
        "outcome": "pending",
        "learned_at": None,
        "learned_seq": None,
        "deadline": event.deadline,
    }


def by_event(rows: Iterable[Any]) -> dict[str, list[Any]]:
    """Log rows grouped by event id, in the given order."""
    out: dict[str, list[Any]] = {}
    for r in rows:
        out.setdefault(r.event_id, []).append(r)
    return out
