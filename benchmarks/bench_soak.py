"""Soak: `flywheel serve` for ``--minutes`` at half its measured peak, with a kill -9 and a
restart in the middle, on SQLite and on PostgreSQL.

    python benchmarks/bench_soak.py [--store sqlite|postgres|both] [--minutes 10]
        [--postgres postgresql://postgres@127.0.0.1:5432/postgres] [--workers 1]

Each store gets ml-latest-small through `flywheel import events` and an item-kNN champion from
`flywheel train`. Phase 1 measures the server's peak: closed loop, ``--peak-connections``
clients running the mix back to back for ``--peak-seconds``. Phase 2 offers half that rate,
open loop (latency counts from when an operation was due), for ``--minutes``. The mix: 40 %
POST /v1/events (batches of 5 with client-chosen event ids; every acknowledged id is kept),
40 % GET /v1/recommendations (one in ten for an unknown user), 20 % Personalizer rank then
reward on the same connection. The loop runs as shipped (retraining item-kNN in a child process
as events arrive) unless ``--no-loop``. Halfway through, the server's process group gets SIGKILL
and a new `flywheel serve` starts on the same store and port. The RSS of the server's processes
(the loop's training child excluded) is sampled every 2 s. Before the server stops, the store is
asked for every acknowledged event id.

The peer is the server itself in the same run: the peak it reached at the start, and minute 2
against the last minute (p99 and RSS). Exit status 1 when an acknowledged event is lost, a 5xx
or a connection error comes outside the restart window (kill to ready + 2 s), an answer is
malformed, or the last minute's RSS exceeds 1.2 x minute 2's.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import orjson
from sqlalchemy import text

import dataflywheel as dfw
from _load import http_request, process_tree, read_response, rss_bytes
from _server import free_port, start_serve, wait_ready

REPO = Path(__file__).resolve().parents[1]
EVENTS, RECS, RANK, REWARD = range(4)
KINDS = ("events", "recommendations", "rank", "reward")
MIX = (0.4, 0.4, 0.2)  # events, recommendations, rank + reward
BATCH = 5
TIMEOUT = 30.0
GRACE = 2.0  # seconds after the restarted server answers that still count as the restart window
RSS_LIMIT = 1.2
CONNECTION_ERROR, MALFORMED = 0, -1
ACTIONS = [
    {"id": f"a{i}", "features": [{"topic": f"t{i % 4}", "price": round(0.1 * i, 2)}]}
    for i in range(10)
]


class Connection:
    """One keep-alive HTTP/1.1 connection that reconnects after a failure."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def call(self, raw: bytes) -> tuple[int, bytes]:
        """(status, body); status 0 when the connection failed (it is then dropped)."""
        try:
            return await asyncio.wait_for(self._call(raw), TIMEOUT)
        except (OSError, EOFError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            self.close()
            return CONNECTION_ERROR, b""

    async def _call(self, raw: bytes) -> tuple[int, bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", self.port)
        reader, writer = self.streams
        writer.write(raw)
        head, body = await read_response(reader)
        return int(head[9:12]), body

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


@dataclass
class Load:
    """The mix of operations and what came back: one record per HTTP request."""

    users: list[str]
    items: list[str]
    prefix: str
    t0: float = 0.0
    kinds: np.ndarray = field(default_factory=lambda: np.empty(0))
    # (due, done) relative to t0, kind, status (HTTP, 0 connection error, -1 malformed), latency
    records: list[tuple[float, float, int, int, float]] = field(default_factory=list)
    acknowledged: list[str] = field(default_factory=list)
    counter: itertools.count[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(0)
        self.kinds = rng.choice(3, size=100_003, p=MIX)
        self.rng = rng

    def record(self, due: float, kind: int, status: int) -> None:
        done = time.perf_counter()
        self.records.append((due - self.t0, done - self.t0, kind, status, done - due))

    async def operation(self, conn: Connection, due: float) -> None:
        n = next(self.counter)
        kind = int(self.kinds[n % len(self.kinds)])
        if kind == EVENTS:
            await self._events(conn, n, due)
        elif kind == RECS:
            user = self.users[n % len(self.users)] if n % 10 else f"soak-new-{n}"
            raw = http_request("GET", f"/v1/recommendations?user_id={user}&k=10")
            status, body = await conn.call(raw)
            ok = status == 200 and isinstance(parse(body).get("items"), list)
            self.record(due, RECS, status if ok or status != 200 else MALFORMED)
        else:
            await self._decision(conn, n, due)

    async def _events(self, conn: Connection, n: int, due: float) -> None:
        ids = [f"{self.prefix}-{n}-{j}" for j in range(BATCH)]
        picks = self.rng.integers(0, 1 << 30, size=2 * BATCH)
        events = [
            {
                "event_id": event_id,
                "user_id": self.users[int(picks[j]) % len(self.users)],
                "item_id": self.items[int(picks[BATCH + j]) % len(self.items)],
                "type": "click",
            }
            for j, event_id in enumerate(ids)
        ]
        raw = http_request("POST", "/v1/events", orjson.dumps({"events": events}))
        status, body = await conn.call(raw)
        if status == 200:
            answer = parse(body)
            if answer.get("accepted", 0) + answer.get("duplicates", 0) != BATCH or answer.get(
                "rejected"
            ):
                status = MALFORMED
            else:
                self.acknowledged.extend(ids)
        self.record(due, EVENTS, status)

    async def _decision(self, conn: Connection, n: int, due: float) -> None:
        context = [{"device": ("mobile", "desktop")[n % 2], "hour": n % 24, "region": f"r{n % 5}"}]
        body = orjson.dumps({"contextFeatures": context, "actions": ACTIONS})
        status, answer = await conn.call(http_request("POST", "/personalizer/rank", body))
        if status != 201:
            self.record(due, RANK, status)
            return
        ranked = parse(answer)
        action = ranked.get("rewardActionId")
        if action not in {a["id"] for a in ACTIONS} or not ranked.get("eventId"):
            self.record(due, RANK, MALFORMED)
            return
        self.record(due, RANK, status)
        value = 1.0 if action == ("a3" if n % 2 == 0 else "a7") else 0.0
        sent = time.perf_counter()
        path = f"/personalizer/events/{ranked['eventId']}/reward"
        status, _ = await conn.call(http_request("POST", path, b'{"value":%g}' % value))
        self.record(sent, REWARD, status)


def parse(body: bytes) -> dict[str, Any]:
    """The JSON object of an answer, empty when it is not one."""
    try:
        answer = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return answer if isinstance(answer, dict) else {}


def run_async(main: Coroutine[Any, Any, Any]) -> Any:
    try:
        import uvloop

        return uvloop.run(main)
    except ImportError:
        return asyncio.run(main)


async def closed_loop(load: Load, port: int, connections: int, seconds: float) -> float:
    """Every client runs operations back to back; operations per second."""
    load.t0 = started = time.perf_counter()
    before = next(load.counter)

    async def client() -> None:
        conn = Connection(port)
        while time.perf_counter() - started < seconds:
            await load.operation(conn, time.perf_counter())
        conn.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return (next(load.counter) - before - 1) / elapsed


class Server:
    """`flywheel serve` on a fixed port, killed with SIGKILL and restarted on demand."""

    def __init__(self, db: str, workers: int, env: dict[str, str], log: BinaryIO) -> None:
        self.db, self.workers, self.env, self.log = db, workers, env, log
        self.port = free_port()
        self.process = self._start()

    def _start(self) -> subprocess.Popen[bytes]:
        process = start_serve(self.db, self.port, workers=self.workers, env=self.env, log=self.log)
        wait_ready(self.port, 120)
        return process

    def kill_and_restart(self) -> float:
        """SIGKILL the whole process group, start again; seconds until the new server answers."""
        started = time.perf_counter()
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self.process = self._start()
        return time.perf_counter() - started

    def rss(self) -> tuple[int, bool]:
        """Resident bytes of the serving processes, and whether the loop's `flywheel train`
        child (not counted) is running."""
        total, training = 0, False
        for pid in process_tree(self.process.pid):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    argv = cmdline.read().split(b"\0")
            except OSError:
                continue
            # argv: [python,] flywheel, train, ...
            if b"train" in argv[1:3]:
                training = True
            else:
                total += rss_bytes(pid)
        return total, training

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)


@dataclass
class Soak:
    rss: list[tuple[float, int, bool]] = field(default_factory=list)
    kill_at: float = 0.0
    ready_at: float = 0.0


async def open_loop(
    load: Load, server: Server, connections: int, rate: float, seconds: float
) -> Soak:
    """Operation ``i`` is due at ``i / rate`` s; kill -9 and restart at ``seconds / 2``."""
    soak = Soak()
    total = int(rate * seconds)
    slots = itertools.count()
    load.t0 = time.perf_counter() + 0.1

    async def client() -> None:
        conn = Connection(server.port)
        while (slot := next(slots)) < total:
            due = load.t0 + slot / rate
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            await load.operation(conn, due)
        conn.close()

    async def sample_rss() -> None:
        while (now := time.perf_counter() - load.t0) < seconds:
            soak.rss.append((now, *server.rss()))
            await asyncio.sleep(2.0)

    async def kill() -> None:
        await asyncio.sleep(load.t0 + seconds / 2 - time.perf_counter())
        soak.kill_at = time.perf_counter() - load.t0
        downtime = await asyncio.to_thread(server.kill_and_restart)
        soak.ready_at = soak.kill_at + downtime

    await asyncio.gather(sample_rss(), kill(), *(client() for _ in range(connections)))
    return soak


def stored_ids(db: str, prefix: str) -> set[str]:
    with dfw.open(db) as wheel, wheel.store.read() as conn:
        rows = conn.execute(
            text("SELECT event_id FROM events WHERE event_id LIKE :p"), {"p": f"{prefix}-%"}
        )
        return {row[0] for row in rows}


def prepare(db: str, ratings: Path) -> str:
    """Import the ratings and train the champion; returns its description."""
    flywheel = str(Path(sys.executable).with_name("flywheel"))
    subprocess.run(
        [
            flywheel,
            "import",
            "events",
            str(ratings),
            "--db",
            db,
            "--type",
            "rating",
            "--map",
            "user_id=userId,item_id=movieId,value=rating",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    trained = subprocess.run(
        [flywheel, "train", "--model", "itemknn", "--json", "--db", db],
        check=True,
        capture_output=True,
    )
    version = orjson.loads(trained.stdout)
    return f"{version['name']} {version['version']}"


def minutes_table(load: Load, soak: Soak, minutes: int) -> list[dict[str, Any]]:
    rows = []
    records = np.asarray(load.records, dtype=float).reshape(-1, 5)
    rss = np.asarray(soak.rss, dtype=float).reshape(-1, 3)
    for minute in range(minutes):
        start, end = 60.0 * minute, 60.0 * (minute + 1)
        mine = records[(records[:, 0] >= start) & (records[:, 0] < end)]
        status = mine[:, 3]
        answered = mine[(status >= 200) & (status < 500), 4] * 1e3
        p50, p99 = np.percentile(answered, [50, 99]) if len(answered) else (np.nan, np.nan)
        sampled = rss[(rss[:, 0] >= start) & (rss[:, 0] < end)]
        samples = sampled[sampled[:, 1] > 0, 1]
        rows.append(
            {
                "minute": minute + 1,
                "requests": len(mine),
                "p50_ms": round(float(p50), 2),
                "p99_ms": round(float(p99), 2),
                "p99_by_kind_ms": {
                    KINDS[k]: round(float(np.percentile(mine[mine[:, 2] == k, 4], 99) * 1e3), 2)
                    for k in range(4)
                    if np.any(mine[:, 2] == k)
                },
                "status_4xx": int(np.sum((status >= 400) & (status < 500))),
                "status_5xx": int(np.sum(status >= 500)),
                "connection_errors": int(np.sum(status == CONNECTION_ERROR)),
                "malformed": int(np.sum(status == MALFORMED)),
                "rss_mb": round(float(np.median(samples)) / 2**20, 1) if len(samples) else None,
                "training_share": round(float(np.mean(sampled[:, 2])), 2) if len(sampled) else 0,
            }
        )
    return rows


def soak_store(name: str, db: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    data = np.loadtxt(args.data / "ratings.csv", delimiter=",", skiprows=1, usecols=(0, 1))
    started = time.perf_counter()
    model = prepare(db, args.data / "ratings.csv")
    print(f"[{name}] imported and trained {model} in {time.perf_counter() - started:.1f} s")
    users = [str(int(u)) for u in np.unique(data[:, 0])]
    items = [str(int(i)) for i in np.unique(data[:, 1])]
    load = Load(users, items, prefix=f"soak-{name}")
    env = {"FLYWHEEL_TRAIN_MODEL": "itemknn"}
    if not args.loop:
        env["FLYWHEEL_LOOP_ENABLED"] = "false"
    with open(work / f"{name}-server.log", "wb") as log:
        server = Server(db, args.workers, env, log)
        try:
            run_async(closed_loop(load, server.port, args.peak_connections, 3.0))  # warm-up
            load.records.clear()
            peak = run_async(
                closed_loop(load, server.port, args.peak_connections, args.peak_seconds)
            )
            failed = [r for r in load.records if not 200 <= r[3] < 300]
            if failed:
                raise SystemExit(f"[{name}] {len(failed)} failures while measuring the peak")
            rate = peak / 2
            print(f"[{name}] peak {peak:,.0f} operations/s; soaking at {rate:,.0f}/s", flush=True)
            load.records.clear()
            seconds = 60.0 * args.minutes
            soak = run_async(open_loop(load, server, args.connections, rate, seconds))
            stored = stored_ids(db, load.prefix)
        finally:
            server.stop()
    logged = (work / f"{name}-server.log").read_text(errors="replace")
    if "Traceback" in logged:
        print(
            f"[{name}] the server logged errors; its log ends:\n{logged[-3000:]}", file=sys.stderr
        )
    result = summarize(name, load, soak, peak, rate, stored, args.minutes, model)
    result["server_tracebacks"] = logged.count("Traceback")
    return result


def summarize(
    name: str,
    load: Load,
    soak: Soak,
    peak: float,
    rate: float,
    stored: set[str],
    minutes: int,
    model: str,
) -> dict[str, Any]:
    rows = minutes_table(load, soak, minutes)
    records = np.asarray(load.records, dtype=float)
    done, status = records[:, 1], records[:, 3]
    window = (done >= soak.kill_at) & (done <= soak.ready_at + GRACE)
    failing = (status >= 500) | (status == CONNECTION_ERROR)
    base, last = rows[min(1, minutes - 1)], rows[-1]
    rss_ratio = (last["rss_mb"] or np.nan) / (base["rss_mb"] or np.nan)
    lost = len(set(load.acknowledged) - stored)
    result = {
        "store": name,
        "model": model,
        "peak_ops_per_s": round(peak, 1),
        "offered_ops_per_s": round(rate, 1),
        "achieved_ops_per_s": round(np.sum(records[:, 2] != REWARD) / (60.0 * minutes), 1),
        "requests": len(load.records),
        "kill_at_s": round(soak.kill_at, 2),
        "ready_at_s": round(soak.ready_at, 2),
        "restart_window_connection_errors": int(np.sum(window & (status == CONNECTION_ERROR))),
        "restart_window_5xx": int(np.sum(window & (status >= 500))),
        "failures_outside_window": int(np.sum(failing & ~window)),
        "5xx_outside_window": int(np.sum((status >= 500) & ~window)),
        "malformed": int(np.sum(status == MALFORMED)),
        "acknowledged_events": len(load.acknowledged),
        "lost_events": lost,
        "p99_ratio_last_to_minute_2": round(last["p99_ms"] / base["p99_ms"], 2),
        "rss_ratio_last_to_minute_2": round(float(rss_ratio), 3),
        "minutes": rows,
    }
    result["pass"] = bool(
        lost == 0
        and result["failures_outside_window"] == 0
        and result["malformed"] == 0
        and rss_ratio <= RSS_LIMIT
    )
    return result


def report(result: dict[str, Any], args: argparse.Namespace) -> list[str]:
    r = result
    lines = [
        f"### {r['store']}",
        "",
        f"Peak (closed loop, {args.peak_connections} connections, {args.peak_seconds:g} s): "
        f"{r['peak_ops_per_s']:,.0f} operations/s; offered half: {r['offered_ops_per_s']:,.0f}/s "
        f"over {args.connections} connections (achieved {r['achieved_ops_per_s']:,.0f}/s, "
        f"{r['requests']:,} HTTP requests); champion {r['model']}.",
        f"kill -9 at {r['kill_at_s']:.1f} s, answering again at {r['ready_at_s']:.1f} s "
        f"(down {r['ready_at_s'] - r['kill_at_s']:.1f} s): "
        f"{r['restart_window_connection_errors']} connection errors and "
        f"{r['restart_window_5xx']} 5xx in the window; outside it {r['failures_outside_window']} "
        f"(5xx or connection errors); malformed answers {r['malformed']}.",
        f"Acknowledged events {r['acknowledged_events']:,}, lost **{r['lost_events']}**. "
        f"Last minute / minute 2: p99 {r['p99_ratio_last_to_minute_2']:.2f} x, RSS "
        f"**{r['rss_ratio_last_to_minute_2']:.3f} x** (limit {RSS_LIMIT}). "
        f"{'PASS' if r['pass'] else 'FAIL'}.",
        "Minutes count operations by when they were due; RSS is the median of the minute's "
        "samples; loop training is the share of samples with the loop's training child alive.",
        "",
        "| minute | requests | p50 ms | p99 ms | 4xx | 5xx | connection errors | RSS MB | "
        "loop training |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['minute']} | {m['requests']:,} | {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | "
        f"{m['status_4xx']} | {m['status_5xx']} | {m['connection_errors']} | {m['rss_mb']} | "
        f"{m['training_share']:.0%} |"
        for m in r["minutes"]
    ]
    return [*lines, ""]


def postgres_database(admin: str) -> tuple[str, Callable[[], None]]:
    """A fresh database on the server of ``admin``; its URL and how to drop it."""
    import psycopg

    base, name = admin.rpartition("/")[0], "flywheel_soak"

    def drop() -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    drop()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}", drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="a PostgreSQL server (any database on it); the run creates its own database",
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--peak-connections", type=int, default=8)
    parser.add_argument("--peak-seconds", type=float, default=20.0)
    parser.add_argument("--no-loop", dest="loop", action="store_false")
    parser.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data" / "ml-latest-small"
    )
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "soak.md")
    args = parser.parse_args()
    load_before = " ".join(f"{x:.2f}" for x in os.getloadavg())
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        work = Path(tmp)
        if args.store in ("sqlite", "both"):
            results.append(soak_store("SQLite", f"sqlite:///{work / 'soak.db'}", args, work))
        if args.store in ("postgres", "both"):
            url, drop = postgres_database(args.postgres)
            try:
                results.append(soak_store("PostgreSQL", url, args, work))
            finally:
                drop()
    load_after = " ".join(f"{x:.2f}" for x in os.getloadavg())
    command = "python benchmarks/bench_soak.py " + " ".join(sys.argv[1:])
    lines = [
        "# Soak: half the measured peak, kill -9 and restart halfway",
        "",
        f"Command: `{command.strip()}` (machine: {os.cpu_count()} cores; load average "
        f"{load_before} before, {load_after} after; `flywheel serve "
        f"--workers {args.workers}`, loop {'on' if args.loop else 'off'}).",
        "",
    ]
    for result in results:
        lines += report(result, args)
    text_report = "\n".join(lines)
    print(text_report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text_report, encoding="utf-8")
    print(json.dumps({"results": results, "pass": all(r["pass"] for r in results)}))
    sys.exit(0 if all(r["pass"] for r in results) else 1)


if __name__ == "__main__":
    main()
