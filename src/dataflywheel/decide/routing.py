"""Where a reward or an activation goes: applied at once by the owner of learning, forwarded
to the store's inbox by any other process, or refused (unknown event, wrong kind, too late).

An event this process holds in memory is answered from memory. Otherwise its log rows are read
(after writing this process's own queue, and waiting up to ``ROW_WAIT_SECONDS`` for the rank's
row when other processes run: their log is written behind too); a pending event is adopted by
the owner or forwarded by another process, and an ended one answers 409, counting a late
reward on its rows.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dataflywheel.decide.log import count_late, event_rows, send_to_inbox
from dataflywheel.decide.pending import Decision, Deployment, Event, activate, add_reward
from dataflywheel.decide.requests import check_kind
from dataflywheel.errors import ConflictError, NotFoundError

if TYPE_CHECKING:
    from dataflywheel.decide.service import DecisionService

ROW_WAIT_SECONDS = 1.0
"""How long a replica waits for the log row of an event ranked by another (its write-behind)."""

Values = Sequence[tuple[str | None, float]]


class Router:
    """Rewards and activations of one :class:`DecisionService`."""

    def __init__(self, service: DecisionService) -> None:
        self.service = service

    def touch(
        self,
        event_id: str,
        values: Values | None,
        multislot: bool | None,
        name: str,
        *,
        retry: bool = True,
    ) -> None:
        """A reward (``values``) or an activation (``multislot`` given): applied here by the
        owner, forwarded to the inbox by another process; refused once the wait is over."""
        now = self.service.clock()
        dep = self.service.deployment(name)
        with dep.lock:
            self.service.upkeep.expire(dep, now)
            event = dep.pending.get(event_id)
            if event is None and self.service.learning.owner:
                event = self.service.upkeep.adopt(dep, event_id)
            if event is not None and now < event.deadline:
                self._apply(dep, event, values, multislot, now)
                return
        found = self._in_store(dep, event_id, values, multislot, now)
        if found and retry:  # pending, but only now in the store: as if it had been here
            self.touch(event_id, values, multislot, name, retry=False)
        elif found:
            raise ConflictError(f"event {event_id!r} is being written; retry", field="eventId")

    def _apply(
        self,
        dep: Deployment,
        event: Event,
        values: Values | None,
        multislot: bool | None,
        now: float,
    ) -> None:
        if values is None:
            check_kind(event.event_id, event.multislot, bool(multislot))
            if event.activated:
                return
            if self.service.learning.owner:
                activate(dep.service, event, now, self.service.learner_of(dep))
                dep.reschedule(event)
                self.service.log.update(
                    dep.name, event.event_id, event.deadline, list(event.decisions.values())
                )
            else:
                self.service.log.forward([_inbox_row(dep.name, event.event_id, None, None, now)])
                activate(dep.service, event, now, _forget)
                dep.reschedule(event)
            return
        targets = [(event.slot(slot), value) for slot, value in values]
        if self.service.learning.owner:
            learn = self.service.learner_of(dep)
            for decision, value in targets:
                add_reward(dep.service, event, decision, value, now, learn)
            self.service.log.update(
                dep.name, event.event_id, event.deadline, [d for d, _ in targets]
            )
        else:
            self.service.log.forward(
                [_inbox_row(dep.name, event.event_id, d.slot_id, v, now) for d, v in targets]
            )

    def _in_store(
        self,
        dep: Deployment,
        event_id: str,
        values: Values | None,
        multislot: bool | None,
        now: float,
    ) -> bool:
        """The event is not held here: True if it is pending in the store (and, when this
        process does not own learning, the call was forwarded to the inbox); else the late call
        is refused (late rewards counted) or the event is unknown."""
        self.service.upkeep.flush()
        rows = event_rows(self.service.store, dep.name, event_id)
        # Asked afresh when the row is missing: a process that started a moment ago is only
        # seen at this one's next heartbeat, and its rank may be the one missing.
        others = bool(rows) or self.service.learning.look_around()
        give_up = time.monotonic() + (ROW_WAIT_SECONDS if others else 0.0)
        while not rows and time.monotonic() < give_up:
            time.sleep(0.02)  # ranked elsewhere: its log row is on the way
            rows = event_rows(self.service.store, dep.name, event_id)
        if not rows:
            raise NotFoundError(f"unknown event {event_id!r}", field="eventId")
        first, slots = rows[0], {r.slot_id for r in rows}
        wanted = multislot if values is None else values[0][0] is not None
        check_kind(event_id, first.slot_id != "", bool(wanted))
        for slot, _ in values or ():
            if (slot or "") not in slots:
                raise NotFoundError(f"event {event_id!r} has no slot {slot!r}", field="slotId")
        start = first.activated_at if first.activated_at is not None else first.ts
        deadline = first.deadline if first.deadline is not None else start + _wait(dep)
        if first.outcome == "pending" and now < deadline:
            if self.service.learning.owner:
                return True
            if values is None:
                send_to_inbox(self.service.store, [_inbox_row(dep.name, event_id, None, None, now)])
            else:
                send_to_inbox(
                    self.service.store,
                    [_inbox_row(dep.name, event_id, s or "", v, now) for s, v in values],
                )
            return False
        late = None if values is None else [slot or "" for slot, _ in values]
        count_late(self.service.store, dep.name, event_id, late)
        what = "the reward is logged, not learned" if values else "it can no longer be activated"
        raise ConflictError(
            f"event {event_id!r} ended its reward wait time ({first.outcome}); {what}",
            field="eventId",
        )


def _inbox_row(
    name: str, event_id: str, slot_id: str | None, value: float | None, at: float
) -> dict[str, Any]:
    kind = "activate" if value is None else "reward"
    return {
        "deployment": name,
        "event_id": event_id,
        "slot_id": slot_id,
        "kind": kind,
        "value": value,
        "at": at,
    }


def _forget(decision: Decision, reward: float, at: float, outcome: str) -> None:
    """Not the owner: the event is only a local record; the owner learns."""


def _wait(dep: Deployment) -> float:
    return dep.service.reward_wait_seconds
