"""Regenerate the dashboard screenshots in docs/images/ (1400×1000) from the demo store.

    .venv/bin/python scripts/screenshots.py [--keep STORE_DIR]

Runs ``flywheel demo --no-browser --days 30 --users 300``, measures the value of data, serves
the store and captures each page in Debian's headless chromium over the DevTools protocol.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "insight")]

from cdp import Browser  # noqa: E402

from helpers import start_server  # noqa: E402

IMAGES = ROOT / "docs" / "images"
PAGES = {
    "overview": "",
    "models": "models",
    "experiments": "experiments",
    "labels": "labels",
    "users": "users?id={user}",
    "items": "items?id=i0",
    "value": "value",
    "decisions": "decisions",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="directory for the demo store (kept)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="flywheel-shots-"))
    work.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{work / 'demo.db'}"
    flywheel = str(Path(sys.executable).with_name("flywheel"))
    if not (work / "demo.db").exists():
        demo = [flywheel, "demo", "--no-browser", "--days", "30", "--users", "300", "--db", url]
        subprocess.run(demo, check=True)
        subprocess.run([flywheel, "value", "--db", url, "--json"], check=True, capture_output=True)
    user = _busiest_user(work / "demo.db")
    process, port = start_server(url)
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with Browser("chromium", work / "profile") as browser:
            for name, page in PAGES.items():
                browser.goto(f"http://127.0.0.1:{port}/#/{page.format(user=user)}")
                browser.wait_for("document.getElementById('view').dataset.state !== 'loading'", 180)
                browser.pump(2.0)
                browser.screenshot(IMAGES / f"dashboard-{name}.png")
                print(f"docs/images/dashboard-{name}.png", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _busiest_user(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT user_id FROM impressions GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return str(row[0])


if __name__ == "__main__":
    main()
