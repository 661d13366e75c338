"""Who learns, and how every process's learner stays the deployment's one learner.

Exactly one process per store owns learning: the holder of the ``decisions:learner`` lease
(:class:`dataflywheel.store.lease.Lease`). It applies rewards, ends wait times, learns each
decision once, stamping it with the next ``learned_seq`` in the log, and saves each learner to
``ARTIFACTS/decisions/NAME/`` with the sequence it holds. Every other process replays the log's
learned decisions in sequence order into its own copy, so all copies are the same learner a
moment apart, and ranks locally. A process starting up, or taking the lease over, loads the
saved learner and replays the log after its sequence. Each process also keeps a short
``decisions:replica:ID`` lease as a heartbeat, so a lone process knows it is alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Connection

from dataflywheel.decide.apprentice import Apprentice
from dataflywheel.decide.learner import Learner, LearnerConfig, create_learner, load_learner
from dataflywheel.decide.pending import Decision, Deployment
from dataflywheel.decide.tables import decisions
from dataflywheel.errors import ModelError
from dataflywheel.store import schema
from dataflywheel.store.lease import Lease
from dataflywheel.store.store import Store

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.json"
LEARNER_LEASE = "decisions:learner"
REPLICA_LEASE = "decisions:replica:"
LEASE_SECONDS = 10.0
"""A dead owner is replaced within this time; the owner renews at every log write."""
CLEAR_SECONDS = 60.0
"""How often the owner deletes heartbeats that expired over a minute ago."""
REPLAY_BATCH = 5000
c = decisions.c
L = schema.leases.c


def default_replica() -> str:
    """This process: a service restarted in the same process takes its own lease back."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Learning:
    """This process's side of learning: the lease, the sequence stamps, checkpoints, replay."""

    def __init__(self, store: Store, directory: Path, replica: str) -> None:
        self.store = store
        self.directory = directory
        self.replica = replica
        self.lease = Lease(store, LEARNER_LEASE, replica)
        self.presence = Lease(store, REPLICA_LEASE + replica, replica)
        self.owner = False
        self.alone = True
        self._cleared = 0.0

    # Leases ------------------------------------------------------------------------------------

    def heartbeat(self) -> bool:
        """Renew presence, see whether others run, take or renew the learner lease; whether
        this process holds it."""
        now = time.time()
        self.presence.acquire(LEASE_SECONDS, now=now)
        self.look_around(now)
        held = self.lease.acquire(LEASE_SECONDS, now=now)
        if held and now - self._cleared >= CLEAR_SECONDS:
            self._cleared = now  # the heartbeats of processes that died, once clearly stale
            with self.store.write() as conn:
                conn.execute(
                    delete(schema.leases).where(
                        L.name.like(REPLICA_LEASE + "%"), L.expires_at < now - 6 * LEASE_SECONDS
                    )
                )
        return held

    def look_around(self, now: float | None = None) -> bool:
        """Whether other processes run now (also kept in ``alone`` for the next heartbeat)."""
        now = time.time() if now is None else now
        with self.store.read() as conn:
            others = conn.execute(
                select(L.holder).where(
                    L.name.like(REPLICA_LEASE + "%"),
                    L.holder != self.replica,
                    L.expires_at >= now,
                )
            ).first()
        self.alone = others is None
        return not self.alone

    def fence(self, conn: Connection) -> bool:
        """Renew the learner lease inside a log write; False when another process has it."""
        now = time.time()
        renewed = conn.execute(
            update(schema.leases)
            .where(L.name == LEARNER_LEASE, L.holder == self.replica, L.expires_at >= now)
            .values(expires_at=now + LEASE_SECONDS)
        )
        return renewed.rowcount == 1

    def release(self) -> None:
        if self.owner:
            self.lease.release()
            self.owner = False
        self.presence.release()

    # Learning ----------------------------------------------------------------------------------

    @staticmethod
    def learn(dep: Deployment, decision: Decision, reward: float, at: float, outcome: str) -> None:
        """Learn one decision now and stamp it with the deployment's next sequence number."""
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
        decision.learned_at = at
        decision.learned_seq = dep.sequence

    def replay(self, dep: Deployment, limit: int = REPLAY_BATCH) -> int:
        """Learn what the log says was learned after this learner's sequence, in sequence order
        (one owner at a time stamps and commits in that order); how many."""
        with self.store.read() as conn:
            rows = conn.execute(
                select(decisions)
                .where(c.deployment == dep.name, c.learned_seq > dep.sequence)
                .order_by(c.learned_seq)
                .limit(limit)
            ).all()
        for r in rows:
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
        return len(rows)

    def unlearned(self, name: str, limit: int = 1000) -> list[Any]:
        """Ended decisions nobody learned: written by an owner after it lost the lease."""
        with self.store.read() as conn:
            return list(
                conn.execute(
                    select(decisions)
                    .where(
                        c.deployment == name,
                        c.learned_seq.is_(None),
                        c.outcome.in_(("rewarded", "default")),
                    )
                    .order_by(c.id)
                    .limit(limit)
                ).all()
            )

    # Checkpoints -------------------------------------------------------------------------------

    def save(self, dep: Deployment) -> None:
        """Save the learner with its sequence, atomically replacing the previous save."""
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

    def load(self, dep: Deployment, config: LearnerConfig, start: int | None) -> None:
        """Give ``dep`` the saved learner when it is the current one (same settings, saved at or
        after ``start``), else a fresh one from ``start``; then replay the log after it."""
        learner: Learner | None = None
        sequence = start or 0
        saved, saved_seq = self._read_saved(dep.name)
        # A save is written after the log it holds, so one ahead of the log is another store's.
        if saved is not None and saved.config == config and sequence <= saved_seq <= self._top(dep):
            learner, sequence = saved, saved_seq
        self.reset(dep, learner or create_learner(config), sequence, start)
        dep.saved_sequence = sequence if learner is not None else -1
        if start is not None:
            while self.replay(dep) == REPLAY_BATCH:
                pass

    def _top(self, dep: Deployment) -> int:
        """The last sequence stamped in the log."""
        with self.store.read() as conn:
            top = conn.execute(
                select(func.max(c.learned_seq)).where(c.deployment == dep.name)
            ).scalar()
        return int(top or 0)

    def _read_saved(self, name: str, attempts: int = 5) -> tuple[Learner | None, int]:
        """The saved learner and its sequence, read whole: the owner may be replacing the save
        as another process reads it, so the sequence must be the same before and after."""
        path = self.directory / name
        error: Exception | None = None
        for _ in range(attempts):
            try:
                before = _saved_sequence(path)
                saved = load_learner(path)
                if before == _saved_sequence(path):
                    return saved, before
            except FileNotFoundError as exc:
                if not path.exists() and not path.with_name(name + ".new").exists():
                    return None, -1  # never saved
                error = exc
            except (ModelError, OSError, ValueError, KeyError) as exc:
                error = exc  # read mid-replacement, most likely: try again
            time.sleep(0.1)
        # Still unreadable: the caller replays the whole decision log instead, losing nothing.
        log.warning("decision learner save %s unreadable (%s); replaying the log", path, error)
        return None, -1

    @staticmethod
    def reset(dep: Deployment, learner: Learner, sequence: int, start: int | None) -> None:
        dep.learner = learner
        dep.apprentice = Apprentice(learner)
        dep.sequence = sequence
        dep.learner_seq = start


def _saved_sequence(path: Path) -> int:
    return int(json.loads((path / CHECKPOINT_FILE).read_text())["sequence"])
