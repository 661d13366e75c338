"""Two decision services on one PostgreSQL database behave as one: a reward reaches the learner
exactly once whichever replica receives it, and settings changed at one reach the other."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, select

from dataflywheel.config import load_settings
from dataflywheel.decide import learning, upkeep
from dataflywheel.decide.linear import LinearLearner
from dataflywheel.decide.service import DecisionService
from dataflywheel.decide.tables import decisions
from dataflywheel.errors import ConflictError
from dataflywheel.store import schema
from dataflywheel.store.store import Store
from helpers import Clock

pytestmark = pytest.mark.postgres

ACTIONS = [{"id": a, "features": [{"kind": a}]} for a in ("a", "b", "c")]
T0 = 1_000_000.0


def until(condition: Callable[[], Any], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def pair(
    postgres_url: str, tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[DecisionService, DecisionService]]:
    """Replica A (it starts first, so it owns learning) and replica B, each with its own store
    connection and its own artifacts directory."""
    monkeypatch.setattr(learning, "LEASE_SECONDS", 2.0)
    monkeypatch.setattr(upkeep, "BEAT_SECONDS", 0.3)
    stores = [Store(load_settings(db=postgres_url)) for _ in range(2)]
    a = DecisionService(stores[0], tmp_path / "a", clock=clock, replica="A")
    b = DecisionService(stores[1], tmp_path / "b", clock=clock, replica="B")
    until(lambda: not b.learning.alone and not a.learning.alone)
    assert a.learning.owner and not b.learning.owner
    try:
        yield a, b
    finally:
        for service in (b, a):
            if not service._stop.is_set():
                service.close()
        for store in stores:
            store.close()


def rows(service: DecisionService, event_id: str) -> list[dict[str, Any]]:
    c = decisions.c
    with service.store.read() as conn:
        found = conn.execute(
            select(decisions).where(c.event_id == event_id).order_by(c.slot_id)
        ).all()
    return [dict(r._mapping) for r in found]


def learns(service: DecisionService) -> int:
    return service.deployment().learner.state.learns


@pytest.mark.parametrize("ranked_at", ["owner", "follower"])
def test_rank_at_one_replica_reward_at_the_other_is_learned_once(
    pair: tuple[DecisionService, DecisionService], clock: Clock, ranked_at: str
) -> None:
    a, b = pair
    first, second = (a, b) if ranked_at == "owner" else (b, a)
    first.rank([{"x": 1}], ACTIONS, event_id="e1")
    clock.now = T0 + 1
    second.reward("e1", 0.5)  # at once: the rank's row may not be written yet
    until(lambda: rows(a, "e1") and rows(a, "e1")[0]["learned_seq"] is not None)
    row = rows(a, "e1")[0]
    assert (row["outcome"], row["reward"], row["rewards"], row["learned_seq"]) == (
        "rewarded",
        0.5,
        1,
        1,
    )
    assert learns(a) == 1
    until(lambda: learns(b) == 1)  # B replays the log into its own copy
    learner_a, learner_b = a.deployment().learner, b.deployment().learner
    assert isinstance(learner_a, LinearLearner) and isinstance(learner_b, LinearLearner)
    assert np.array_equal(learner_a.mean, learner_b.mean)
    time.sleep(0.5)
    assert rows(a, "e1")[0]["learned_seq"] == 1 and learns(a) == 1 and learns(b) == 1


@pytest.mark.parametrize(("aggregation", "expected"), [("earliest", None), ("sum", 0.75)])
def test_the_same_event_rewarded_at_both_replicas_at_once(
    pair: tuple[DecisionService, DecisionService],
    clock: Clock,
    aggregation: str,
    expected: float | None,
) -> None:
    a, b = pair
    a.configure(service={"reward_aggregation": aggregation, "reward_wait_seconds": 10.0})
    until(lambda: b.deployment().service.reward_aggregation == aggregation)
    a.rank([], ACTIONS, event_id="both")
    a.flush()
    clock.now = T0 + 1
    start = threading.Barrier(2)

    def send(service: DecisionService, value: float) -> None:
        start.wait()
        service.reward("both", value)

    threads = [
        threading.Thread(target=send, args=(a, 0.5)),
        threading.Thread(target=send, args=(b, 0.25)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    until(lambda: rows(a, "both")[0]["rewards"] == 2)
    if aggregation == "sum":
        assert learns(a) == 0  # the sum is learned when the wait ends
        clock.now = T0 + 12  # past the deadline and the settling time
    until(lambda: rows(a, "both")[0]["learned_seq"] is not None)
    row = rows(a, "both")[0]
    assert row["outcome"] == "rewarded"
    assert row["reward"] in (0.5, 0.25) if expected is None else row["reward"] == expected
    assert learns(a) == 1 and a.deployment().learner.state.reward_sum == row["reward"]
    until(lambda: learns(b) == 1)


def test_a_late_reward_at_the_other_replica_is_refused_and_logged(
    pair: tuple[DecisionService, DecisionService], clock: Clock
) -> None:
    a, b = pair
    a.configure(service={"reward_wait_seconds": 10.0, "default_reward": -0.5})
    a.rank([], ACTIONS, event_id="late")
    clock.now = T0 + 12
    until(lambda: rows(a, "late") and rows(a, "late")[0]["outcome"] == "default")
    with pytest.raises(ConflictError):
        b.reward("late", 1.0)
    row = rows(a, "late")[0]
    assert (row["outcome"], row["reward"], row["late_rewards"]) == ("default", None, 1)
    assert learns(a) == 1 and a.deployment().learner.state.reward_sum == -0.5


def test_the_other_replica_takes_over_when_the_owner_dies(
    pair: tuple[DecisionService, DecisionService], clock: Clock
) -> None:
    a, b = pair
    a.configure(service={"reward_wait_seconds": 10.0})
    for event_id in ("learned", "rewarded-later", "never-rewarded"):
        a.rank([], ACTIONS, event_id=event_id)
    clock.now = T0 + 1
    a.reward("learned", 1.0)
    a.flush()
    a._stop.set()  # A dies: its thread stops; nothing more is written, its leases lapse
    a.upkeep._thread.join()
    b.reward("rewarded-later", 0.5)  # B does not own learning yet: kept in the inbox
    until(lambda: b.learning.owner, 10.0)
    until(lambda: rows(b, "rewarded-later")[0]["learned_seq"] is not None)
    clock.now = T0 + 12
    until(lambda: rows(b, "never-rewarded")[0]["outcome"] == "default")
    b.flush()
    found = {e: rows(b, e)[0] for e in ("learned", "rewarded-later", "never-rewarded")}
    assert found["learned"]["learned_seq"] == 1
    assert {r["learned_seq"] for r in found.values()} == {1, 2, 3}
    assert [found[e]["outcome"] for e in found] == ["rewarded", "rewarded", "default"]
    assert learns(b) == 3
    b.close()
    assert (b.directory / "default" / "checkpoint.json").read_text() == '{"sequence": 3}'


def test_settings_changed_at_one_replica_reach_the_other(
    pair: tuple[DecisionService, DecisionService], clock: Clock
) -> None:
    a, b = pair
    a.configure(service={"default_reward": -0.25}, learner={"algorithm": "linear-ucb"})
    until(lambda: b.status()["service"]["default_reward"] == -0.25)
    assert b.status()["learner"]["algorithm"] == "linear-ucb"
    # A change at the follower: the owner applies it and places the new learner in sequence.
    b.configure(learner={"algorithm": "linear-ts", "epsilon": 0.1})
    until(lambda: a.status()["learner"]["epsilon"] == 0.1)
    until(lambda: b.deployment().learner_seq is not None)
    b.rank([], ACTIONS, event_id="after")
    clock.now = T0 + 1
    b.reward("after", 1.0)
    until(lambda: learns(a) == 1 and learns(b) == 1)
    # A deployment created at one replica is served by the other.
    a.configure("other", service={"learning_mode": "Apprentice"})
    assert b.status("other")["service"]["learning_mode"] == "Apprentice"


def test_a_reward_reaches_an_event_ranked_by_a_replica_started_a_moment_ago(
    postgres_url: str, tmp_path: Path, clock: Clock
) -> None:
    """The first process has not seen the second yet (its heartbeat is seconds away); a reward
    for the second one's rank, whose row is not written yet, still finds it."""
    stores = [Store(load_settings(db=postgres_url)) for _ in range(2)]
    first = DecisionService(stores[0], tmp_path / "first", clock=clock, replica="first")
    second = DecisionService(stores[1], tmp_path / "second", clock=clock, replica="second")
    try:
        assert first.learning.owner and first.learning.alone
        first.deployment(), second.deployment()  # loaded: the next two calls take microseconds
        second.rank([], ACTIONS, event_id="new")
        first.reward("new", 1.0)
        assert learns(first) == 1
    finally:
        for service in (second, first):
            service.close()
        for store in stores:
            store.close()


def test_a_learner_saved_while_another_process_reads_it_is_read_whole(
    pair: tuple[DecisionService, DecisionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The owner replaces its save while a starting replica reads it: the reader gets one save
    with its own sequence, never the model of one and the sequence of the other."""
    a, _ = pair
    dep = a.deployment()
    a.learning.save(dep)  # sequence 0, an untrained learner
    read = learning.load_learner
    swaps: list[bool] = []

    def load_during_a_save(path: Path) -> Any:
        loaded = read(path)
        if not swaps:  # the owner saves a trained learner (sequence 1) right after this read
            swaps.append(True)
            dep.learner.learn([], ACTIONS, 0, 0.5, 1.0)
            dep.sequence = 1
            a.learning.save(dep)
        return loaded

    monkeypatch.setattr(learning, "load_learner", load_during_a_save)
    saved, sequence = a.learning._read_saved(dep.name)
    assert saved is not None and (sequence, saved.state.learns) == (1, 1)


def test_heartbeats_of_dead_processes_are_cleared(
    pair: tuple[DecisionService, DecisionService], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _ = pair
    monkeypatch.setattr(learning, "CLEAR_SECONDS", 0.0)
    leases = schema.leases
    with a.store.write() as conn:
        conn.execute(
            insert(leases).values(
                name=learning.REPLICA_LEASE + "gone", holder="gone", expires_at=time.time() - 3600
            )
        )

    def names() -> set[str]:
        with a.store.read() as conn:
            return set(conn.execute(select(leases.c.name)).scalars())

    until(lambda: learning.REPLICA_LEASE + "gone" not in names())
    assert {learning.REPLICA_LEASE + "A", learning.REPLICA_LEASE + "B"} <= names()


def test_a_saved_learner_ahead_of_the_log_belongs_to_another_store(
    postgres_url: str, sqlite_url: str, tmp_path: Path, clock: Clock
) -> None:
    """Artifacts shared by mistake between two stores: the save is ignored, not mixed in."""
    other = Store(load_settings(db=sqlite_url))
    service = DecisionService(other, tmp_path / "shared", clock=clock, replica="other")
    service.rank([], ACTIONS, event_id="elsewhere")
    service.reward("elsewhere", 1.0)
    service.close()
    other.close()
    store = Store(load_settings(db=postgres_url))
    service = DecisionService(store, tmp_path / "shared", clock=clock, replica="here")
    try:
        assert learns(service) == 0
        service.rank([], ACTIONS, event_id="here")
        service.reward("here", 1.0)
        service.flush()
        assert rows(service, "here")[0]["learned_seq"] == 1
    finally:
        service.close()
        store.close()
