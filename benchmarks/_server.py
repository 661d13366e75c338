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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.1)
        else:
            raise RuntimeError("server did not start")
        yield port
    finally:
        process.terminate()
        process.wait(30)
