"""Rank + reward rounds per second: over HTTP against a real `flywheel serve`, in-process, and
raw Vowpal Wabbit in-process on the same requests (the peer).

Each round is one Personalizer rank call (3 context features, 10 actions with 2 features each)
followed by one reward call for the served action, on the default deployment (linear Thompson
sampling). The HTTP client runs ``--connections`` persistent HTTP/1.1 connections on one asyncio
event loop (uvloop when installed) in this process; it shares the machine's cores with the
server, so the CPU both used is reported. The in-process figure calls ``DecisionService``
directly on the same kind of store (decision log included); the peer is raw VW
(``--cb_explore_adf --squarecb -q ::``, its best exploration in bench_bandit_vw.py) predicting
and learning the same requests from text lines, with no log.

    .venv/bin/python benchmarks/bench_decisions_http.py [--rounds 20000] [--connections 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import vowpalwabbit

from _load import child_pids, cpu_seconds, http_request, read_response
from _server import running_server
from dataflywheel.config import load_settings
from dataflywheel.decide.service import DecisionService
from dataflywheel.store.store import Store

N_ACTIONS = 10
TARGET = 2_000
VW_PEER = "--cb_explore_adf --squarecb --cb_type mtr -q :: --quiet --random_seed 1"


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


@dataclass
class HttpResult:
    rate: float
    server_cores: float | None
    client_cores: float


async def _connection(port: int, share: list[tuple[bytes, dict[str, Any]]]) -> None:
    """Rank then reward each body of ``share`` over one keep-alive connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for raw, original in share:
            writer.write(raw)
            head, body = await read_response(reader)
            if not head.startswith(b"HTTP/1.1 201"):
                raise RuntimeError(f"rank failed: {head!r} {body!r}")
            answer = orjson.loads(body)
            value = reward_of(original, answer["rewardActionId"])
            path = f"/personalizer/events/{answer['eventId']}/reward"
            writer.write(http_request("POST", path, b'{"value":%g}' % value))
            head, body = await read_response(reader)
            if not head.startswith(b"HTTP/1.1 204"):
                raise RuntimeError(f"reward failed: {head!r} {body!r}")
    finally:
        writer.close()


def _run_clients(port: int, requests: list[dict[str, Any]], connections: int) -> float:
    """Run every round over ``connections`` connections; returns the elapsed seconds."""
    ranks = [http_request("POST", "/personalizer/rank", json.dumps(r).encode()) for r in requests]
    work = list(zip(ranks, requests, strict=True))

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(_connection(port, work[i::connections]) for i in range(connections)))
        return time.perf_counter() - started

    runner: Callable[..., float] = asyncio.run
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    return runner(main())


def bench_http(db: str, requests: list[dict[str, Any]], connections: int) -> HttpResult:
    with running_server(db, env={"FLYWHEEL_LOOP_ENABLED": "false"}) as port:
        _run_clients(port, requests[:500], connections)  # warm-up
        servers = child_pids()
        server_before = [cpu_seconds(pid) for pid in servers]
        client_before = time.process_time()
        elapsed = _run_clients(port, requests, connections)
        client = time.process_time() - client_before
        server_after = [cpu_seconds(pid) for pid in servers]
    used = [
        after - before
        for before, after in zip(server_before, server_after, strict=True)
        if before is not None and after is not None
    ]
    server = sum(used) / elapsed if used else None
    return HttpResult(len(requests) / elapsed, server, client / elapsed)


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


def bench_vw(requests: list[dict[str, Any]]) -> float:
    """Raw VW: text lines from the same JSON, predict, sample, learn (action lines built once)."""
    ws = vowpalwabbit.Workspace(VW_PEER)
    rng = np.random.default_rng(1)
    actions = requests[0]["actions"]
    ids = [a["id"] for a in actions]
    action_lines = [
        f"|a _id={a['id']} topic={a['features'][0]['topic']} price:{a['features'][0]['price']}"
        for a in actions
    ]
    start = time.perf_counter()
    for body in requests:
        ctx = body["contextFeatures"][0]
        lines = [
            f"shared |c device={ctx['device']} hour:{ctx['hour']} region={ctx['region']}",
            *action_lines,
        ]
        pmf = np.asarray(ws.predict(lines))
        chosen = min(int(np.searchsorted(np.cumsum(pmf), rng.random() * pmf.sum())), N_ACTIONS - 1)
        reward = reward_of(body, ids[chosen])
        lines[chosen + 1] = f"0:{-reward}:{pmf[chosen]} {lines[chosen + 1]}"
        ws.learn(lines)
    rate = len(requests) / (time.perf_counter() - start)
    ws.finish()
    return rate


def _cores(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--output", type=Path, default=None, help="Write a Markdown report.")
    args = parser.parse_args()
    requests = make_requests(args.rounds)
    load = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
    try:
        vw = bench_vw(requests)
        in_process = bench_in_process(f"sqlite:///{work / 'inproc.db'}", requests)
        http = bench_http(f"sqlite:///{work / 'http.db'}", requests, args.connections)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = "benchmarks/bench_decisions_http.py " + " ".join(sys.argv[1:])
    lines = [
        "# Decision rounds per second (rank + reward)",
        "",
        f"Command: `.venv/bin/python {command.strip()}`  ",
        f"Machine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, vowpalwabbit {vowpalwabbit.__version__}; server: "
        "`flywheel serve` (1 worker, SQLite); client: this process, on the same cores  ",
        f"Rounds: {args.rounds:,}; {N_ACTIONS} actions; learner: linear-ts (default); "
        f"1-minute load average at start: {load:.1f} (other jobs share the cores)",
        "",
        "| path | rounds/s | ÷ raw VW in-process |",
        "|---|---:|---:|",
        f"| HTTP, {args.connections} keep-alive connections (server {_cores(http.server_cores)} "
        f"cores, client {_cores(http.client_cores)} cores) | {http.rate:,.0f} | "
        f"{http.rate / vw:.2f} |",
        f"| in-process `DecisionService` (with the decision log) | {in_process:,.0f} | "
        f"{in_process / vw:.2f} |",
        f"| raw VW in-process, squarecb (peer, no log) | {vw:,.0f} | 1.00 |",
        "",
        f"HTTP target {TARGET:,} rounds/s: {'met' if http.rate >= TARGET else 'not met'} "
        f"({http.rate / TARGET:.2f} × target).",
    ]
    report = "\n".join(lines) + "\n"
    print(report)
    if args.output:
        args.output.write_text(report)


if __name__ == "__main__":
    main()
