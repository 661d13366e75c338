"""The dashboard in a real headless chromium, served by a real ``flywheel serve`` process."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflywheel as dfw
from insight.scenarios import build

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``flywheel serve`` on a store holding a few weeks of the flywheel scenario."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    with dfw.open(url) as wheel:
        build(wheel.store, "flywheel", days=22, users=120)
    port = _free_port()
    flywheel = Path(sys.executable).with_name("flywheel")
    process = subprocess.Popen(
        [str(flywheel), "serve", "--db", url, "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    break
            except OSError:
                pass
            if time.time() > deadline or process.poll() is not None:
                raise RuntimeError("flywheel serve did not start")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--window-size=1400,1000",
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_dashboard_draws_charts_and_the_verdict(chromium: str, server: str, tmp_path: Path) -> None:
    conn = http.client.HTTPConnection(server.split("/")[2], timeout=30)
    conn.request("GET", "/v1/health/flywheel")
    response = conn.getresponse()
    assert response.status == 200, "GET /v1/health/flywheel: is the insight router included?"
    verdict = json.loads(response.read())["verdict"]
    dom = _chromium(chromium, tmp_path / "profile-dom", "--dump-dom", server).stdout
    assert dom.count('class="main-svg"') >= 6, dom[:2000]  # plotly drew the charts
    assert f"Flywheel: {verdict}" in dom and verdict == "spinning"
    assert "it becomes a better model" in dom and "Next:" in dom
    shot = tmp_path / "dashboard.png"
    _chromium(chromium, tmp_path / "profile-shot", f"--screenshot={shot}", server)
    assert shot.exists() and shot.stat().st_size > 20_000
    SCREENSHOTS.mkdir(exist_ok=True)
    shutil.copyfile(shot, SCREENSHOTS / "dashboard.png")
