"""kill -9 of a real server during continuous ingestion loses no acknowledged event."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from pathlib import Path

import orjson
import pytest

import dataflywheel as dfw
from helpers import start_server


def _sender(port: int, prefix: str, acknowledged: list[str], stop: threading.Event) -> None:
    """Send batches of 50 until the server dies; remember the ids of acknowledged batches."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    n = 0
    while not stop.is_set():
        ids = [f"{prefix}-{n}-{i}" for i in range(50)]
        body = orjson.dumps(
            {
                "events": [
                    {"event_id": e, "user_id": f"u{i}", "item_id": "x", "type": "click"}
                    for i, e in enumerate(ids)
                ]
            }
        )
        try:
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = orjson.loads(response.read())
        except (OSError, http.client.HTTPException):
            return
        if response.status == 200 and payload["accepted"] + payload["duplicates"] == 50:
            acknowledged.extend(ids)
        n += 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_kill_9_loses_no_acknowledged_event(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = (
        f"sqlite:///{tmp_path / 'kill.db'}"
        if backend == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    process, port = start_server(db)
    acknowledged: list[str] = []
    stop = threading.Event()
    senders = [
        threading.Thread(target=_sender, args=(port, f"t{k}", acknowledged, stop)) for k in range(4)
    ]
    for sender in senders:
        sender.start()
    time.sleep(2.0)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)
    stop.set()
    for sender in senders:
        sender.join(15)
    assert len(acknowledged) > 500, "the server should have acknowledged some batches"

    with dfw.open(db) as wheel, wheel.store.read() as conn:
        stored = {row[0] for row in conn.exec_driver_sql("SELECT event_id FROM events").all()}
    lost = set(acknowledged) - stored
    assert not lost, f"{len(lost)} acknowledged events lost"
