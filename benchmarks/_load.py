"""A light HTTP/1.1 load generator on asyncio streams (keep-alive, many connections)."""

from __future__ import annotations

import asyncio
import os
import time


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
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append((head + body).decode(errors="replace")[:300])
    finally:
        writer.close()


def http_request(
    method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def run_load(port: int, requests: list[bytes], connections: int) -> tuple[float, list[float]]:
    """Send every request over ``connections`` keep-alive connections; (requests/s, latencies)."""
    pending = list(reversed(requests))
    latencies: list[float] = []
    errors: list[str] = []

    async def main() -> float:
        started = time.perf_counter()
        await asyncio.gather(
            *(_client(port, pending, latencies, errors) for _ in range(connections))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return len(requests) / elapsed, latencies


async def _paced_client(
    port: int,
    queue: list[tuple[int, bytes]],
    due: list[float],
    latencies: list[float],
    errors: list[str],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while queue:
            index, raw = queue.pop()
            wait = due[index] - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            latencies[index] = time.perf_counter() - due[index]
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append((head + body).decode(errors="replace")[:300])
    finally:
        writer.close()


def run_paced(
    port: int, requests: list[bytes], connections: int, rate: float
) -> tuple[float, list[float]]:
    """Open loop: request ``i`` is due at ``i / rate`` s; its latency counts from when it was due
    (so a server that falls behind pays for the queue). Returns (requests/s, latencies in
    request order)."""
    queue = list(reversed(list(enumerate(requests))))
    latencies = [0.0] * len(requests)
    errors: list[str] = []

    async def main() -> float:
        started = time.perf_counter() + 0.05
        due = [started + i / rate for i in range(len(requests))]
        await asyncio.gather(
            *(_paced_client(port, queue, due, latencies, errors) for _ in range(connections))
        )
        return time.perf_counter() - started

    elapsed = asyncio.run(main())
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return len(requests) / elapsed, latencies


async def read_response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One HTTP/1.1 response with a Content-Length (or none): (status line and headers, body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    start = head.lower().find(b"content-length:")
    if start < 0:
        return head, b""
    length = int(head[start + 15 : head.index(b"\r\n", start)])
    return head, await reader.readexactly(length)


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a process has used so far, from /proc; None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids() -> list[int]:
    """Ids of this process's children (e.g. the server a benchmark started), from /proc."""
    children = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    ppid = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == os.getpid():
                children.append(int(entry))
    return children


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it, from /proc."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rpartition(")")[2].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parents.items() if ppid in frontier]
        tree += frontier
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
