"""The loop lease: one winner per term under a real race, renewal keeps it, death loses it,
and a loop that lost it changes no model."""

from __future__ import annotations

import multiprocessing
import time
from collections import defaultdict

import pytest
from sqlalchemy import insert

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings, Settings
from dataflywheel.errors import ConflictError
from dataflywheel.store import schema
from dataflywheel.store.lease import Lease
from dataflywheel.store.store import Store
from rollout.lease_race import contend

ROUNDS = 60


def test_two_processes_never_both_win_a_term(store_url: str) -> None:
    """Even terms race for an absent row, odd terms for one whose holder expired."""
    store = Store(Settings(db=store_url))
    with store.write() as conn:
        for term in range(1, ROUNDS, 2):
            conn.execute(
                insert(schema.leases).values(name=f"race-{term}", holder="gone", expires_at=1.0)
            )
    store.close()
    spawn = multiprocessing.get_context("spawn")
    barrier, results = spawn.Barrier(2), spawn.Queue()
    workers = [
        spawn.Process(target=contend, args=(store_url, name, ROUNDS, barrier, results))
        for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    outcomes: dict[int, list[str]] = defaultdict(list)
    for _ in range(2 * ROUNDS):
        term, holder, won = results.get(timeout=30)
        if won:
            outcomes[term].append(holder)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    assert {term: holders for term, holders in outcomes.items() if len(holders) > 1} == {}
    assert sorted(outcomes) == list(range(ROUNDS)), "every term has a winner"


def test_renewal_keeps_the_lease_and_a_dead_holder_is_replaced(store_url: str) -> None:
    store = Store(Settings(db=store_url))
    try:
        mine, theirs = Lease(store, "loop", "me"), Lease(store, "loop", "other")
        ttl = 3.0  # renewed every second: two seconds of slack for a loaded machine
        assert mine.acquire(ttl)
        with mine.kept(ttl) as renewal:
            deadline = time.time() + 2 * ttl
            while time.time() < deadline:
                assert not theirs.acquire(ttl), "a renewed lease is never up for grabs"
                time.sleep(0.05)
            assert mine.held() and not renewal.lost.is_set()
        # The holder stops renewing (it died): the lease is its own until it expires, then not.
        assert not theirs.acquire(ttl)
        time.sleep(ttl + 0.1)
        assert theirs.acquire(ttl)
        assert not mine.held() and theirs.held()
        theirs.release()
        assert mine.acquire(ttl), "a released lease is free at once"
    finally:
        store.close()


def test_a_loop_that_lost_its_lease_promotes_nothing(store_url: str) -> None:
    """v2 waits in shadow past its deadline without evidence, so the next step retires it."""
    with dfw.open(store_url) as wheel:
        for n in range(2):
            wheel.registry.register(
                name="popularity",
                params={},
                metrics={},
                snapshot_id="s",
                artifact="none",
                fit_seconds=0.0,
                created_at=1.7e9 + n,
            )
        wheel.registry.promote("v1", "first model", 1.7e9 + 2)
        wheel.registry.set_status("v2", "shadow", "passed", 1.7e9 + 3)
        loop = wheel.loop
        loop.rollout.config = RolloutSettings(shadow=True, shadow_max_seconds=1.0)
        ttl = 0.6
        assert loop.lease.acquire(ttl)
        with loop.lease.kept(ttl) as renewal:
            loop._renewal = renewal
            # Another replica takes the lease (as if ours had lapsed on its clock).
            rival = Lease(wheel.store, "loop", "rival")
            assert rival.acquire(60.0, now=time.time() + ttl + 1)
            assert renewal.lost.wait(5), "the renewal notices the lease is gone"
            with pytest.raises(ConflictError, match="lease"):
                loop.run_once(now=1.7e9 + 100)
            loop._renewal = None
        assert wheel.registry.champion()["version"] == "v1"  # type: ignore[index]
        assert wheel.registry.get("v2")["status"] == "shadow"
        rival.release()
        step = loop.run_leased(ttl)
        assert step is not None and step["action"] == "kept", step
        assert wheel.registry.get("v2")["status"] == "retired"
