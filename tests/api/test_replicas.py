"""Stateless replicas: three real `flywheel serve` processes on one PostgreSQL database are
interchangeable behind a load balancer."""

from __future__ import annotations

import http.client
import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import orjson
import psycopg
import pytest

from dataflywheel.serve.tail import CATCHUP_SECONDS
from helpers import start_server

LEASE_SECONDS = 3.0
INTERVAL_SECONDS = 1.0
# Expiry, the next attempt, and a loaded machine (3 servers, PostgreSQL and the tests on 2 cores).
TAKEOVER_BOUND = LEASE_SECONDS + 2 * INTERVAL_SECONDS + 5.0
CHAMPION_BOUND = 5.0  # the periodic check (1 s) and loading the model, on a loaded machine
ENV = {
    **os.environ,
    "FLYWHEEL_LOOP_INTERVAL_SECONDS": str(INTERVAL_SECONDS),
    "FLYWHEEL_LOOP_LEASE_SECONDS": str(LEASE_SECONDS),
    "FLYWHEEL_RETRAIN_MIN_NEW_EVENTS": "50",
    "FLYWHEEL_TRAIN_MODEL": "itemknn",
    "FLYWHEEL_TRAIN_BUDGET_SECONDS": "2",
}


def _call(port: int, method: str, path: str, body: object = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        payload = None if body is None else orjson.dumps(body)
        conn.request(method, path, payload, {"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        return response.status, orjson.loads(data) if data else None
    finally:
        conn.close()


def _ok(port: int, method: str, path: str, body: object = None) -> Any:
    status, payload = _call(port, method, path, body)
    assert status in (200, 201, 204), payload
    return payload


def _query(url: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(sql).fetchall())


def _until(condition: Any, seconds: float, what: str) -> float:
    """Seconds until ``condition()`` held; fails after ``seconds``."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < seconds, f"timed out: {what}"
        time.sleep(0.05)
    return time.monotonic() - started


@pytest.fixture
def replicas(postgres_url: str) -> Iterator[list[tuple[subprocess.Popen[bytes], int]]]:
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        for _ in range(3):
            started.append(start_server(postgres_url, ENV))
        yield started
    finally:
        for process, _ in started:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process, _ in started:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


class Poster:
    """Posts events round-robin to the live replicas and remembers what was acknowledged."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = list(ports)
        self.acknowledged: set[str] = set()
        self.accepted = 0
        self._serial = itertools.count()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def post(self, port: int, events: list[dict[str, Any]]) -> None:
        for event in events:
            event.setdefault("event_id", f"e{next(self._serial)}")
        try:
            status, body = _call(port, "POST", "/v1/events", {"events": events})
        except OSError:
            return  # a replica that died: nothing acknowledged
        if status == 200:
            assert body["rejected"] == []
            self.acknowledged.update(e["event_id"] for e in events)
            self.accepted += body["accepted"]

    def _run(self) -> None:
        for n in itertools.count():
            if self._stop.wait(0.02):
                return
            user = n % 40
            item = f"{'ab'[user % 2]}{n % 12}"
            self.post(self.ports[n % len(self.ports)], [_event(user, item, n)])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _event(user: int, item: str, n: int) -> dict[str, Any]:
    return {"user_id": f"u{user}", "item_id": item, "type": "click", "timestamp": 1.7e9 + n}


def _champion(url: str) -> str | None:
    rows = _query(url, "SELECT version FROM models WHERE status = 'champion'")
    return rows[0][0] if rows else None


def _holder_pid(url: str) -> int | None:
    rows = _query(url, "SELECT holder, expires_at FROM leases WHERE name = 'loop'")
    if not rows or rows[0][1] < time.time():
        return None
    return int(rows[0][0].split(":")[1])


@pytest.mark.postgres
@pytest.mark.slow
def test_three_replicas_are_interchangeable(
    postgres_url: str, replicas: list[tuple[subprocess.Popen[bytes], int]]
) -> None:
    ports = [port for _, port in replicas]
    poster = Poster(ports)
    # Two tastes: even users click a-items, odd users b-items; sent round-robin.
    history = [
        _event(u, f"{'ab'[u % 2]}{i}", u * 50 + i)
        for u in range(40)
        for i in range(0, 12, 1 + u % 3)
    ]
    for n, start in enumerate(range(0, len(history), 20)):
        poster.post(ports[n % 3], history[start : start + 20])

    # One replica's loop trains the first champion; every replica serves it within the bound.
    _until(lambda: _champion(postgres_url) is not None, 40, "a first champion")
    champion = _champion(postgres_url)
    for port in ports:
        _until(
            lambda port=port: (
                _ok(port, "GET", "/v1/recommendations?user_id=u0&k=5")["model_version"] == champion
            ),
            CHAMPION_BOUND,
            f"replica {port} serves {champion}",
        )

    # A click at replica A changes the next list at replica B.
    a, b = ports[0], ports[1]
    before = [i["item_id"] for i in _ok(b, "GET", "/v1/recommendations?user_id=u0&k=5")["items"]]
    poster.post(a, [{"user_id": "u0", "item_id": before[0], "type": "click"}])
    # Consumed at A, so excluded at B. The notification is asynchronous (milliseconds); the
    # bound stays under the tail's periodic catch-up, so it is the notification that delivers.
    _until(
        lambda: (
            before[0]
            not in {
                i["item_id"] for i in _ok(b, "GET", "/v1/recommendations?user_id=u0&k=5")["items"]
            }
        ),
        CATCHUP_SECONDS * 0.75,
        "the click at A excludes the item at B",
    )

    # kill -9 of the loop holder hands the loop to another replica within the bound, while
    # events keep arriving; training goes on there.
    _until(lambda: _holder_pid(postgres_url) is not None, 10, "a lease holder")
    holder = _holder_pid(postgres_url)
    victim = next(process for process, _ in replicas if process.pid == holder)
    survivors = [port for process, port in replicas if process is not victim]
    poster.start()
    models_before = _query(postgres_url, "SELECT count(*) FROM models")[0][0]
    time.sleep(0.5)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(10)
    killed_at = time.monotonic()
    poster.ports = survivors
    _until(
        lambda: _holder_pid(postgres_url) not in (None, holder),
        TAKEOVER_BOUND,
        "another replica holds the loop lease",
    )
    took_over = time.monotonic() - killed_at
    assert _holder_pid(postgres_url) in {p.pid for p, _ in replicas if p is not victim}
    _until(
        lambda: _query(postgres_url, "SELECT count(*) FROM models")[0][0] > models_before,
        30,
        "a model trained by the new holder",
    )
    poster.stop()

    # Nothing acknowledged is lost, nothing is stored twice.
    stored = [row[0] for row in _query(postgres_url, "SELECT event_id FROM events")]
    assert poster.acknowledged <= set(stored)
    assert len(stored) == len(set(stored)) == poster.accepted
    print(f"loop lease taken over {took_over:.1f} s after kill -9 (bound {TAKEOVER_BOUND} s)")


@pytest.mark.postgres
@pytest.mark.slow
def test_rank_at_one_replica_reward_at_another_is_learned_once(
    postgres_url: str, replicas: list[tuple[subprocess.Popen[bytes], int]]
) -> None:
    """Personalizer API: rank at replica A, reward at replica B; the decision is rewarded and
    learned exactly once."""
    a, b = replicas[0][1], replicas[1][1]
    _ok(a, "PUT", "/personalizer/v1.0/configurations/service", {"rewardWaitTime": "PT5S"})
    ranked = _ok(
        a,
        "POST",
        "/personalizer/v1.0/rank",
        {
            "eventId": "replica-decision",
            "contextFeatures": [{"device": "phone"}],
            "actions": [{"id": "x", "features": [{"a": 1}]}, {"id": "y", "features": [{"a": 2}]}],
        },
    )
    assert ranked["eventId"] == "replica-decision"
    _ok(b, "POST", "/personalizer/v1.0/events/replica-decision/reward", {"value": 1.0})

    def row() -> tuple[Any, ...]:
        found = _query(
            postgres_url,
            "SELECT outcome, rewards, learned_at, learned_seq FROM decision_events "
            "WHERE event_id = 'replica-decision'",
        )
        assert len(found) == 1
        return found[0]

    _until(lambda: row()[2] is not None, 20, "the decision is learned")
    outcome, rewards, _, learned_seq = row()
    assert (outcome, rewards) == ("rewarded", 1)
    # Past the 5 s wait: the ranking replica must not learn the event again (as a default).
    time.sleep(6.5)
    assert row()[0:2] == ("rewarded", 1) and row()[3] == learned_seq
