"""Start and stop a real `flywheel serve` process for the benchmarks."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, timeout: float = 60.0) -> None:
    """Return once `GET /healthz` on ``port`` answers 200."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start")


def start_serve(
    db: str,
    port: int,
    *,
    workers: int = 1,
    env: dict[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """A `flywheel serve` process in its own process group (a kill of the group takes its
    workers and the loop's training child with it); not yet waited on."""
    flywheel = Path(sys.executable).with_name("flywheel")
    return subprocess.Popen(
        [str(flywheel), "serve", "--db", db, "--port", str(port), "--workers", str(workers)],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=log,
        start_new_session=True,
    )


@contextmanager
def running_server(
    db: str, *, workers: int = 1, env: dict[str, str] | None = None
) -> Iterator[int]:
    """Yield the port of a `flywheel serve` process on ``db``; kill it afterwards."""
    port = free_port()
    flywheel = Path(sys.executable).with_name("flywheel")
    process = subprocess.Popen(
        [str(flywheel), "serve", "--db", db, "--port", str(port), "--workers", str(workers)],
        env={**os.environ, **(env or {})},
    )
    try:
        wait_ready(port)
        yield port
    finally:
        process.terminate()
        process.wait(30)
