"""A decision service's background work, and how a process takes up or gives up learning.

Every 50 ms: write the log. The owner of learning also ends wait times, applies the inbox
(rewards and activations other processes received) and ends the waits of other processes'
events found in the store (each tick and every ``FOLLOW_SECONDS`` while others run, every
``BEAT_SECONDS`` alone), learns ended decisions nobody learned and saves learners once a
minute; another process replays the log's newly learned decisions into its learner
(``FOLLOW_SECONDS``). Every process renews its heartbeat and contends for the lease
(``BEAT_SECONDS``) and applies stored settings changes (``SYNC_SECONDS``).

With other processes alive, the owner ends a wait ``SETTLE_SECONDS`` after its deadline, so a
reward another process accepted just before it reaches the inbox first.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from dataflywheel.decide.learner import create_learner
from dataflywheel.decide.learning import Learning
from dataflywheel.decide.log import count_late, event_rows, read_inbox
from dataflywheel.decide.pending import (
    Deployment,
    Event,
    activate,
    add_reward,
    by_event,
    event_from_rows,
    finish,
)
from dataflywheel.decide.tables import decisions, deployments
from dataflywheel.errors import FlywheelError

if TYPE_CHECKING:
    from dataflywheel.decide.service import DecisionService

log = logging.getLogger(__name__)

TICK_SECONDS = 0.05
BEAT_SECONDS = 2.0
SYNC_SECONDS = 1.0
FOLLOW_SECONDS = 0.25
PICKUP_SECONDS = 5.0
SAVE_SECONDS = 60.0
SETTLE_SECONDS = 1.0
c = decisions.c
D = deployments.c


class Upkeep:
    """The background thread of one :class:`DecisionService`, and its role changes."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service
        self.store = service.store
        self.log = service.log
        self.learning: Learning = service.learning
        self._lost = False
        self._last = dict.fromkeys(("sync", "follow", "pickup", "inbox", "scan"), 0.0)
        self._last["save"] = self._last["beat"] = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="decisions", daemon=True)
        self.beat()  # a lone process owns learning from its first call

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.service._stop.set()
        self._thread.join()

    def _due(self, what: str, every: float) -> bool:
        now = time.monotonic()
        if now - self._last[what] < every:
            return False
        self._last[what] = now
        return True

    def _run(self) -> None:
        while not self.service._stop.wait(TICK_SECONDS):
            try:
                self.tick()
            except Exception:
                log.exception("decision service tick failed")

    def tick(self) -> None:
        if self._due("beat", BEAT_SECONDS):
            self.beat()
        if self._lost:
            self._demote()
        if self._due("sync", SYNC_SECONDS):
            self.service.settings.sync()
        now = self.service.clock()
        # Alone, nothing new reaches the inbox or the store's pending events but from a process
        # this one has not seen yet (seen at the next heartbeat): look there less often.
        if self.learning.owner:
            every = BEAT_SECONDS if self.learning.alone else 0.0
            if self._due("inbox", every):
                self.apply_inbox()
            if self._due("scan", max(every, FOLLOW_SECONDS)):
                self.scan_expired(now)
        self.sweep(now)
        self.flush()
        if self.learning.owner:
            if self._due("pickup", PICKUP_SECONDS):
                self.pickup()
            if self._due("save", SAVE_SECONDS):
                self.save_all(changed_only=True)
        elif self._due("follow", FOLLOW_SECONDS):
            for dep in self.service.loaded():
                if dep.learner_seq is not None:
                    with dep.lock:
                        self.learning.replay(dep)

    # Roles -------------------------------------------------------------------------------------

    def beat(self) -> None:
        try:
            held = self.learning.heartbeat()
        except SQLAlchemyError as exc:
            log.warning("decisions: heartbeat failed: %s", exc)
            return
        if held and not self.learning.owner:
            self._promote()
        elif not held and self.learning.owner:
            self._on_lost()

    def _on_lost(self) -> None:
        """Another process owns learning now: stop stamping at once; reload in the tick."""
        if self.learning.owner:
            log.warning("decisions: learner lease lost; following the new owner")
        self.learning.owner = False
        self._lost = True

    def _promote(self) -> None:
        """Take learning over: catch up with the log, then hold every pending event."""
        self.flush()
        for dep in self.service.loaded():
            with dep.lock:
                dep.pending.clear()
                dep.deadlines.clear()
                if dep.learner_seq is not None:
                    while self.learning.replay(dep):
                        pass
        self.learning.owner = True
        for dep in self.service.loaded():
            with dep.lock:
                self.take_over(dep)

    def take_over(self, dep: Deployment) -> None:
        """As owner: settle the learner's start, give old rows a deadline, adopt the pending."""
        if dep.learner_seq is None:
            with self.store.read() as conn:
                top = conn.execute(
                    select(func.max(c.learned_seq)).where(c.deployment == dep.name)
                ).scalar()
            start = max(int(top or 0), dep.sequence)
            Learning.reset(dep, create_learner(dep.learner.config), start, start)
            with self.store.write() as conn:
                conn.execute(
                    update(deployments).where(D.name == dep.name).values(learner_seq=start)
                )
        with self.store.write() as conn:
            conn.execute(
                update(decisions)
                .where(c.deployment == dep.name, c.outcome == "pending", c.deadline.is_(None))
                .values(deadline=func.coalesce(c.activated_at, c.ts) + _wait(dep))
            )
            rows = conn.execute(
                select(decisions)
                .where(c.deployment == dep.name, c.outcome == "pending")
                .order_by(c.id)
            ).all()
        for event_id, group in by_event(rows).items():
            if event_id not in dep.pending and not self.log.busy(dep.name, event_id):
                dep.open(event_from_rows(group, _wait(dep)))

    def _demote(self) -> None:
        """Not the owner any more: the learner goes back to what the log says was learned."""
        self._lost = False
        for dep in self.service.loaded():
            with dep.lock:
                self.learning.load(dep, dep.learner.config, dep.learner_seq)

    # Events ------------------------------------------------------------------------------------

    def expire(self, dep: Deployment, now: float) -> None:
        """End the waits that are over (caller holds ``dep.lock``); only the owner learns."""
        owner = self.learning.owner
        until = now - SETTLE_SECONDS if owner and not self.learning.alone else now
        for event in dep.expired(until):
            if owner:
                finish(dep.service, event, self.service.learner_of(dep))
                self.log.update(dep.name, event.event_id, event.deadline, _all(event))

    def sweep(self, now: float) -> None:
        for dep in self.service.loaded():
            with dep.lock:
                self.expire(dep, now)

    def adopt(self, dep: Deployment, event_id: str) -> Event | None:
        """The event from the store when it is still pending (caller holds ``dep.lock``)."""
        event = dep.pending.get(event_id)
        if event is not None:
            return event
        if self.log.busy(dep.name, event_id):
            self.flush()
        rows = event_rows(self.store, dep.name, event_id)
        if not rows or rows[0].outcome != "pending":
            return None
        event = event_from_rows(rows, _wait(dep))
        dep.open(event)
        return event

    def apply_inbox(self) -> None:
        """Apply the rewards and activations other processes received, at their own times."""
        skip = self.log.applying()
        for r in read_inbox(self.store):
            if r.id in skip:
                continue
            try:
                dep = self.service.deployment(r.deployment)
            except FlywheelError:
                self.log.applied(r.id)
                continue
            with dep.lock:
                event = self.adopt(dep, r.event_id)
                decision = event.decisions.get(r.slot_id or "") if event else None
                if event is None or r.at >= event.deadline:
                    if r.kind == "reward":
                        count_late(self.store, dep.name, r.event_id, [r.slot_id or ""])
                elif r.kind == "activate" and not event.activated:
                    activate(dep.service, event, r.at, self.service.learner_of(dep))
                    dep.reschedule(event)
                    self.log.update(dep.name, event.event_id, event.deadline, _all(event))
                elif r.kind == "reward" and decision is not None:
                    learn = self.service.learner_of(dep)
                    add_reward(dep.service, event, decision, r.value, r.at, learn)
                    self.log.update(dep.name, event.event_id, event.deadline, [decision])
                self.log.applied(r.id)

    def scan_expired(self, now: float) -> None:
        """End the waits of events ranked by other processes that nobody touched since."""
        until = now - (0.0 if self.learning.alone else SETTLE_SECONDS)
        for dep in self.service.loaded():
            with self.store.read() as conn:
                ids = (
                    conn.execute(
                        select(c.event_id)
                        .where(
                            c.deployment == dep.name, c.outcome == "pending", c.deadline <= until
                        )
                        .distinct()
                        .limit(500)
                    )
                    .scalars()
                    .all()
                )
            if ids:
                with dep.lock:
                    for event_id in ids:
                        self.adopt(dep, event_id)
                    self.expire(dep, now)

    def pickup(self) -> None:
        """Learn ended decisions that were written unlearned (by an owner that lost its lease)."""
        for dep in self.service.loaded():
            rows = self.learning.unlearned(dep.name)
            if not rows:
                continue
            with dep.lock:
                for r in rows:
                    if r.event_id in dep.pending or self.log.busy(dep.name, r.event_id):
                        continue
                    event = event_from_rows([r], _wait(dep))
                    decision = event.decisions[r.slot_id]
                    reward = r.reward if r.reward is not None else dep.service.default_reward
                    Learning.learn(dep, decision, reward, r.learned_at or event.deadline, r.outcome)
                    self.log.update(dep.name, r.event_id, event.deadline, [decision])

    # Writes ------------------------------------------------------------------------------------

    def flush(self) -> None:
        fence = self.learning.fence if self.learning.owner else None
        self.log.flush(fence, self._on_lost)

    def save_all(self, *, changed_only: bool = False) -> None:
        """Save each learner with the sequence it holds (owner only), its log written first."""
        if not self.learning.owner:
            return
        for dep in self.service.loaded():
            if changed_only and dep.sequence == dep.saved_sequence:
                continue
            with dep.lock:
                self.flush()
                if self.learning.owner:
                    self.learning.save(dep)


def _all(event: Event) -> list[Any]:
    return list(event.decisions.values())


def _wait(dep: Deployment) -> float:
    return dep.service.reward_wait_seconds
