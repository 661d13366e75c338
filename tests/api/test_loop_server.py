"""The background loop of a real server trains and promotes while requests keep being answered."""

from __future__ import annotations

import http.client
import os
import signal
import sqlite3
import threading
import time
from pathlib import Path

import orjson
import pytest

from helpers import start_server


@pytest.mark.slow
def test_loop_promotes_while_serving(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'loop.db'}"
    env = {
        **os.environ,
        "FLYWHEEL_LOOP_INTERVAL_SECONDS": "1",
        "FLYWHEEL_RETRAIN_MIN_NEW_EVENTS": "50",
        "FLYWHEEL_TRAIN_BUDGET_SECONDS": "3",
    }
    server, port = start_server(db, env)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

        def post(path: str, body: object) -> dict[str, object]:
            conn.request("POST", path, orjson.dumps(body), {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = orjson.loads(response.read())
            assert response.status == 200, payload
            return payload  # type: ignore[no-any-return]

        events = [
            {
                "user_id": f"u{u}",
                "item_id": f"{'ab'[u % 2]}{i}",
                "type": "click",
                "timestamp": 1.7e9 + u * 50 + i,
            }
            for u in range(40)
            for i in range(0, 12, 1 + u % 3)
        ]
        post("/v1/events", {"events": events})

        answered: list[str | None] = []
        failures: list[str] = []
        stop = threading.Event()

        def keep_asking() -> None:
            client = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            while not stop.is_set():
                client.request("GET", "/v1/recommendations?user_id=u1&k=5")
                response = client.getresponse()
                body = orjson.loads(response.read())
                if response.status != 200:
                    failures.append(str(body))
                else:
                    answered.append(body["model_version"])
                time.sleep(0.02)

        asker = threading.Thread(target=keep_asking)
        asker.start()
        deadline = time.time() + 120
        versions: list[dict[str, object]] = []
        while time.time() < deadline:
            conn.request("GET", "/v1/models")
            versions = orjson.loads(conn.getresponse().read())["models"]
            if len(versions) >= 2:
                break
            if len(versions) == 1:
                # A second wave of data makes the loop train again and gate a candidate.
                post(
                    "/v1/events", {"events": [{**e, "user_id": e["user_id"] + "x"} for e in events]}
                )
            time.sleep(1)
        time.sleep(3)
        stop.set()
        asker.join()
        assert not failures, failures[:3]
        assert len(versions) >= 2, versions
        statuses = {v["version"]: v["status"] for v in versions}
        assert list(statuses.values()).count("champion") == 1
        assert answered and answered[-1] is not None
        assert len(answered) > 50, "serving kept answering during training"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)


@pytest.mark.slow
def test_the_lease_outlives_a_long_training_run_and_is_released_on_stop(tmp_path: Path) -> None:
    """The training child runs for longer than the lease (a 3 s lease, a child that takes
    several seconds to start and fit): the server renews it, so it never lapses; SIGTERM frees
    it at once."""
    path = tmp_path / "lease.db"
    env = {
        **os.environ,
        "FLYWHEEL_LOOP_INTERVAL_SECONDS": "0.5",
        "FLYWHEEL_LOOP_LEASE_SECONDS": "3",
        "FLYWHEEL_RETRAIN_MIN_NEW_EVENTS": "10",
        # The search uses its whole budget, so the child outlives the 3 s lease on any machine.
        "FLYWHEEL_TRAIN_BUDGET_SECONDS": "5",
    }
    server, port = start_server(f"sqlite:///{path}", env)
    observed: list[tuple[float, float]] = []
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        events = [
            {"user_id": f"u{u}", "item_id": f"i{(u + n) % 15}", "type": "click"}
            for u in range(30)
            for n in range(8)
        ]
        conn.request(
            "POST",
            "/v1/events",
            orjson.dumps({"events": events}),
            {"Content-Type": "application/json"},
        )
        assert conn.getresponse().read()
        deadline = time.time() + 90
        models: list[object] = []
        while time.time() < deadline and not models:
            with sqlite3.connect(path) as db:
                row = db.execute("SELECT expires_at FROM leases WHERE name = 'loop'").fetchone()
            if row is not None:
                observed.append((time.time(), float(row[0])))
            conn.request("GET", "/v1/models")
            models = orjson.loads(conn.getresponse().read())["models"]
            time.sleep(0.1)
        assert models, "the loop trained a model"
        started = observed[0][0]
        assert observed[-1][0] - started > 3, "training outlasted the lease"
        lapsed = [(seen, expires) for seen, expires in observed if expires < seen]
        assert not lapsed, f"the lease lapsed while its holder trained: {lapsed[:3]}"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM leases").fetchone() == (0,), "released on stop"
