"""Rank + reward rounds per second: over HTTP against a real `flywheel serve`, and in-process.

Each round is one Personalizer rank call (3 context features, 10 actions with 2 features each)
followed by one reward call for the served action, on the default deployment (linear Thompson
sampling). The HTTP client keeps ``--connections`` persistent HTTP/1.1 connections busy from as
many threads; the in-process figure calls ``DecisionService`` directly on the same kind of store.

    .venv/bin/python benchmarks/bench_decisions_http.py --rounds 20000 --connections 4
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from _server import running_server
from dataflywheel.config import load_settings
from dataflywheel.decide.service import DecisionService
from dataflywheel.store.store import Store

N_ACTIONS = 10


def make_requests(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """``n`` rank bodies over a small synthetic catalogue (contexts repeat, as in production)."""
    rng = np.random.default_rng(seed)
    actions = [
        {"id": f"a{i}", "features": [{"topic": f"t{i % 4}", "price": round(float(p), 2)}]}
        for i, p in enumerate(rng.random(N_ACTIONS))
    ]
    return [
        {
            "contextFeatures": [
                {"device": ["mobile", "desktop"][i % 2], "hour": int(h), "region": f"r{i % 5}"}
            ],
            "actions": actions,
        }
        for i, h in enumerate(rng.integers(0, 24, n))
    ]


def reward_of(body: dict[str, Any], action: str) -> float:
    """A known best action per device, so the learner has something to learn."""
    best = "a3" if body["contextFeatures"][0]["device"] == "mobile" else "a7"
    return 1.0 if action == best else 0.0


def http_rounds(port: int, bodies: list[bytes], originals: list[dict[str, Any]]) -> int:
    """Rank and reward every body over one keep-alive connection; returns the rounds done."""
    conn = http.client.HTTPConnection("127.0.0.1", port)
    headers = {"Content-Type": "application/json"}
    for body, original in zip(bodies, originals, strict=True):
        conn.request("POST", "/personalizer/rank", body, headers)
        response = conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 201:
            raise RuntimeError(f"rank failed: {answer}")
        value = reward_of(original, answer["rewardActionId"])
        conn.request(
            "POST",
            f"/personalizer/events/{answer['eventId']}/reward",
            b'{"value": %g}' % value,
            headers,
        )
        response = conn.getresponse()
        response.read()
        if response.status != 204:
            raise RuntimeError(f"reward failed: {response.status}")
    conn.close()
    return len(bodies)


def bench_http(db: str, requests: list[dict[str, Any]], connections: int) -> float:
    with running_server(db, env={"FLYWHEEL_LOOP_ENABLED": "false"}) as port:
        encoded = [json.dumps(r).encode() for r in requests]
        http_rounds(port, encoded[:200], requests[:200])  # warm-up
        shares = [list(range(i, len(requests), connections)) for i in range(connections)]
        threads = [
            threading.Thread(
                target=http_rounds,
                args=(port, [encoded[j] for j in share], [requests[j] for j in share]),
            )
            for share in shares
        ]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(requests) / (time.perf_counter() - start)


def bench_in_process(db: str, requests: list[dict[str, Any]]) -> float:
    settings = load_settings(db=db)
    store = Store(settings)
    service = DecisionService(store, settings.artifacts_dir() / "decisions")
    try:
        start = time.perf_counter()
        for body in requests:
            result = service.rank(body["contextFeatures"], body["actions"])
            service.reward(result.event_id, reward_of(body, result.reward_action_id))
        return len(requests) / (time.perf_counter() - start)
    finally:
        service.close()
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--output", type=Path, default=None, help="Write a Markdown report.")
    args = parser.parse_args()
    requests = make_requests(args.rounds)
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
    try:
        in_process = bench_in_process(f"sqlite:///{work / 'inproc.db'}", requests)
        over_http = bench_http(f"sqlite:///{work / 'http.db'}", requests, args.connections)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "benchmarks/bench_decisions_http.py " + " ".join(sys.argv[1:])
    lines = [
        "# Decision rounds per second (rank + reward)",
        "",
        f"Command: `.venv/bin/python {command.strip()}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}; server: `flywheel serve` (1 worker, SQLite)  ",
        f"Rounds: {args.rounds:,}; {N_ACTIONS} actions; learner: linear-ts (default); "
        f"1-minute load average at start: {load:.1f} (other jobs share the cores)",
        "",
        "| path | rounds/s |",
        "|---|---:|",
        f"| HTTP, {args.connections} keep-alive connections | {over_http:,.0f} |",
        f"| in-process `DecisionService` | {in_process:,.0f} |",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
