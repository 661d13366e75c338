"""Stateless replicas on PostgreSQL: throughput with 1, 2 and 3 `flywheel serve` processes.

One PostgreSQL database with a trained champion; N replicas behind a round-robin "load
balancer" (each client connection is pinned to one replica, connections spread evenly). The
mix is recommendations for random users with event posts interleaved (one in ten requests, each
a new event), so every replica's serving tail folds in the others' events. Reported per N:
requests/s, p50/p99 latency, the server processes' CPU time per request (from /proc, the
replicas and their children), and events lost (acknowledged but not stored) or stored twice,
which must both be 0. ``--decisions`` adds a Personalizer phase: rank at one replica, reward
the same event at the next one.

    .venv/bin/python benchmarks/bench_replicas.py [--replicas 1 2 3] [--requests 4000]
        [--connections 24] [--decisions]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import time
import uuid

import numpy as np
import orjson
import psycopg

import dataflywheel as dfw
from _load import cpu_seconds, http_request, process_tree
from _server import free_port, start_serve, wait_ready

ADMIN = os.environ.get("FLYWHEEL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


async def _client(
    port: int, requests: list[bytes], latencies: list[float], errors: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while requests:
            raw = requests.pop()
            started = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if head[9:10] != b"2":  # any 2xx (rank answers 201, reward 204)
                errors.append((head + body).decode(errors="replace")[:300])
    finally:
        writer.close()


def run_spread(
    ports: list[int], requests: list[list[bytes]], connections: int
) -> tuple[float, list[float]]:
    """Each connection ``c`` sends from ``requests[c % len(ports)]`` to ``ports[c % ...]``."""
    queues = [list(reversed(r)) for r in requests]
    latencies: list[float] = []
    errors: list[str] = []
    total = sum(len(r) for r in requests)

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(
                _client(ports[c % len(ports)], queues[c % len(ports)], latencies, errors)
                for c in range(connections)
            )
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return total / elapsed, latencies


def seed(url: str, users: int, items: int, per_user: int) -> None:
    rng = np.random.default_rng(7)
    wheel = dfw.open(url)
    try:
        events = [
            {
                "user_id": f"u{u}",
                "item_id": f"i{int(rng.zipf(1.3)) % items}",
                "type": "click",
                "timestamp": 1.7e9 + u * 100 + n,
            }
            for u in range(users)
            for n in range(per_user)
        ]
        for start in range(0, len(events), 10_000):
            wheel.track_many(events[start : start + 10_000])
        wheel.train(model="itemknn", budget=30)
    finally:
        wheel.close()


def mix(n: int, users: int, items: int, tag: str) -> tuple[list[bytes], set[str]]:
    """Recommendation requests with one event post in ten; the posted event ids."""
    rng = random.Random(n)
    requests, posted = [], set()
    for k in range(n):
        user = f"u{rng.randrange(users)}"
        if k % 10 == 9:
            event_id = f"{tag}-{k}"
            posted.add(event_id)
            body = {
                "events": [
                    {
                        "event_id": event_id,
                        "user_id": user,
                        "item_id": f"i{rng.randrange(items)}",
                        "type": "click",
                    }
                ]
            }
            requests.append(http_request("POST", "/v1/events", orjson.dumps(body)))
        else:
            requests.append(http_request("GET", f"/v1/recommendations?user_id={user}&k=10"))
    return requests, posted


def decisions(n: int, tag: str) -> tuple[list[bytes], list[bytes]]:
    """Rank requests with their event ids, and the rewards of those events."""
    ranks, rewards = [], []
    for k in range(n):
        event_id = f"{tag}-d{k}"
        body = {
            "eventId": event_id,
            "contextFeatures": [{"segment": f"s{k % 7}"}],
            "actions": [{"id": f"a{j}", "features": [{"j": j}]} for j in range(5)],
        }
        ranks.append(http_request("POST", "/personalizer/v1.0/rank", orjson.dumps(body)))
        reward = orjson.dumps({"value": float(k % 2)})
        rewards.append(http_request("POST", f"/personalizer/v1.0/events/{event_id}/reward", reward))
    return ranks, rewards


def reward_outcomes(url: str, prefix: str, sent: int, wait: float = 15.0) -> tuple[int, int]:
    """Rewards not learned (lost) and rewards counted or learned more than once (duplicated),
    once the learner's owner has applied what other replicas received (a few seconds)."""
    deadline = time.monotonic() + wait
    while True:
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                "SELECT rewards, outcome, learned_seq FROM decision_events WHERE event_id LIKE %s",
                (f"{prefix}%",),
            ).fetchall()
        learned = [r for r in rows if r[1] == "rewarded" and r[2] is not None]
        if len(learned) >= sent or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    seqs = [r[2] for r in learned]
    duplicated = sum(1 for r in rows if r[0] > 1) + len(seqs) - len(set(seqs))
    return sent - len(learned), duplicated


def split(requests: list[bytes], parts: int, shift: int = 0) -> list[list[bytes]]:
    """Request ``k`` goes to replica ``(k + shift) % parts``."""
    return [requests[(p - shift) % parts :: parts] for p in range(parts)]


def measure(
    ports: list[int], pids: list[int], requests: list[list[bytes]], connections: int
) -> dict[str, float]:
    def cpu() -> float:
        return sum(cpu_seconds(p) or 0.0 for root in pids for p in process_tree(root))

    before = cpu()
    rate, latencies = run_spread(ports, requests, connections)
    used = cpu() - before
    total = sum(len(r) for r in requests)
    ms = np.asarray(latencies) * 1000
    return {
        "rate": rate,
        "p50": float(np.percentile(ms, 50)),
        "p99": float(np.percentile(ms, 99)),
        "cpu_ms": 1000 * used / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=24)
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=500)
    parser.add_argument("--decisions", action="store_true", help="add a rank/reward phase")
    args = parser.parse_args()

    name = f"flywheel_bench_replicas_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = f"{ADMIN.rsplit('/', 1)[0]}/{name}"
    try:
        seed(url, args.users, args.items, 20)
        print(f"load average before: {os.getloadavg()}  cores: {os.cpu_count()}")
        header = "| replicas | req/s | p50 ms | p99 ms | server CPU ms/req | lost | duplicated |"
        print(header)
        print("|---|---|---|---|---|---|---|")
        for n in args.replicas:
            run_replicas(url, n, args)
        print(f"load average after: {os.getloadavg()}")
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_replicas(url: str, n: int, args: argparse.Namespace) -> None:
    env = {"FLYWHEEL_LOOP_ENABLED": "false"}  # serving only: a training run would skew CPU
    ports = [free_port() for _ in range(n)]
    processes = [start_serve(url, port, env=env) for port in ports]
    try:
        for port in ports:
            wait_ready(port)
        warm, _ = mix(50 * n, args.users, args.items, f"warm{n}")
        run_spread(ports, split(warm, n), n)
        requests, posted = mix(args.requests, args.users, args.items, f"r{n}")
        found = measure(ports, [p.pid for p in processes], split(requests, n), args.connections)
        with psycopg.connect(url) as conn:
            stored = [
                row[0]
                for row in conn.execute(
                    "SELECT event_id FROM events WHERE event_id LIKE %s", (f"r{n}-%",)
                )
            ]
        lost = len(posted - set(stored))
        duplicated = len(stored) - len(set(stored))
        print(
            f"| {n} | {found['rate']:.0f} | {found['p50']:.1f} | {found['p99']:.1f} | "
            f"{found['cpu_ms']:.2f} | {lost} | {duplicated} |"
        )
        if args.decisions:
            ranks, rewards = decisions(args.requests // 2, f"r{n}")
            pids = [p.pid for p in processes]
            ranked = measure(ports, pids, split(ranks, n), args.connections)
            rewarded = measure(ports, pids, split(rewards, n, shift=1), args.connections)
            lost, duplicated = reward_outcomes(url, f"r{n}-d", len(rewards))
            for what, m, counts in (
                ("rank", ranked, "| |"),
                ("reward (next replica)", rewarded, f"{lost} | {duplicated} |"),
            ):
                print(
                    f"| {n} {what} | {m['rate']:.0f} | {m['p50']:.1f} | {m['p99']:.1f} | "
                    f"{m['cpu_ms']:.2f} | {counts}"
                )
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            process.wait(30)


if __name__ == "__main__":
    main()
