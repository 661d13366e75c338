"""The dashboard in a real headless chromium, served by a real ``flywheel serve`` process."""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflywheel as dfw
from helpers import start_server
from insight.scenarios import build

pytestmark = pytest.mark.browser
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """``flywheel serve`` on a store holding a few weeks of the flywheel scenario."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    with dfw.open(url) as wheel:
        build(wheel.store, "flywheel", days=22, users=120)
    process, port = start_server(url)
    try:
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
