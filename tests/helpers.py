"""Small helpers shared by tests: real server processes, and whether this run is CI."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# In CI the PostgreSQL and browser tests must run: a missing server or browser fails them.
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(db: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """A `flywheel serve` process on ``db`` (own process group) and its port, once it answers."""
    port = free_port()
    flywheel = Path(sys.executable).with_name("flywheel")
    process = subprocess.Popen(
        [str(flywheel), "serve", "--db", db, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return process, port
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start")


class Clock:
    """A settable clock, so wait times pass without sleeping."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
