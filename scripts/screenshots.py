"""Regenerate the dashboard screenshots in docs/images/ (1400×1000) from the demo store.

    .venv/bin/python scripts/screenshots.py [--keep STORE_DIR]

Runs ``flywheel demo --no-browser --days 30 --users 300`` and measures the value of data; then
stages what the demo does not do by itself: an A/B test of the champion against a fresh
candidate, with one more list a day for each simulated visitor of the last seven days and
clicks that fall with the rank; two label triggers and their queued cases; an admin key and an
erasure (audit log). Serves the store with the loop
off (so the experiment stays as staged) and captures each page in Debian's headless chromium
over the DevTools protocol, with the admin key.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import dataflywheel as dfw

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "insight")]

from cdp import Browser  # noqa: E402

from helpers import start_server  # noqa: E402

IMAGES = ROOT / "docs" / "images"
DAY = 86_400.0
SCROLL_TO_TRANSITIONS = (
    "[...document.querySelectorAll('h2')].find(e => e.textContent.startsWith('Promotions'))"
    ".scrollIntoView()"
)
EXPERIMENT_DAYS = 7
TRIGGERS = (
    {
        "name": "clicked low in the list",
        "task": "relevance",
        "when": {
            "all": [
                {"field": "type", "op": "eq", "value": "click"},
                {"field": "rank", "op": "ge", "value": 6},
            ]
        },
        "priority": 2,
        "quota_per_day": 30,
    },
    {
        "name": "disliked",
        "task": "relevance",
        "when": {"field": "type", "op": "eq", "value": "dislike"},
        "priority": 5,
        "quota_per_day": 30,
    },
)
PAGES = {
    "overview": "",
    "models": "models",
    "experiments": "experiments",
    "labels": "labels",
    "users": "users?id={user}",
    "audit": "models",
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
    if not (work / "admin.key").exists():
        _stage(url)
        _audit(flywheel, url, work / "admin.key")
    key = (work / "admin.key").read_text().strip()
    user = _busiest_user(work / "demo.db")
    process, port = start_server(url, {**os.environ, "FLYWHEEL_LOOP_ENABLED": "false"})
    IMAGES.mkdir(parents=True, exist_ok=True)
    try:
        with Browser("chromium", work / "profile") as browser:
            for n, (name, page) in enumerate(PAGES.items()):
                path = page.format(user=user)
                if n == 0:  # the page keeps the key in the tab's sessionStorage
                    path += f"?key={key}"
                browser.goto(f"http://127.0.0.1:{port}/#/{path}")
                browser.wait_for("document.getElementById('view').dataset.state !== 'loading'", 180)
                browser.pump(2.0)
                if name == "audit":
                    browser.evaluate(SCROLL_TO_TRANSITIONS)
                    browser.pump(0.5)
                browser.screenshot(IMAGES / f"dashboard-{name}.png")
                print(f"docs/images/dashboard-{name}.png", file=sys.stderr)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _stage(url: str) -> None:
    """Lifecycle transitions, a running A/B test with days of traffic, and label cases."""
    now = time.time()
    rng = np.random.default_rng(7)
    with dfw.open(url, seed=7) as wheel:
        champion = wheel.registry.champion()
        assert champion is not None, "the demo trains a champion"
        candidate = wheel.train(str(champion["name"]), now=now - (EXPERIMENT_DAYS + 1) * DAY)
        spec = {
            "name": f"{candidate['version']} vs {champion['version']}",
            "arms": [
                {"name": "control", "model_version": champion["version"], "weight": 50},
                {"name": "candidate", "model_version": candidate["version"], "weight": 50},
            ],
            "metric": "clicks",
            "guardrails": [{"metric": "strong_events", "margin": 0.05}],
            "min_sample_size": 1000,
        }
        wheel.loop.rollout.experiments.create(spec, now=now - EXPERIMENT_DAYS * DAY)
        queue = wheel.loop.rollout.queue
        for trigger in TRIGGERS:
            queue.add_trigger(trigger, now=now - EXPERIMENT_DAYS * DAY)
        for day in range(EXPERIMENT_DAYS, 0, -1):
            # The day's simulated visitors get one more list each: usage stays as simulated.
            visitors = _active(wheel, now - day * DAY, now - (day - 1) * DAY)
            times = list(now - day * DAY + rng.uniform(0.0, 0.9 * DAY, size=len(visitors)))
            served = wheel.recommend_many(visitors, k=10, now=times)
            wheel.track_many(_feedback(served, visitors, times, rng))
        wheel.flush()
        queue.scan(now)


def _active(wheel: dfw.Flywheel, start: float, end: float) -> list[str]:
    """Users with an event in [start, end)."""
    from sqlalchemy import select

    from dataflywheel.store import schema

    e, u = schema.events.c, schema.users.c
    with wheel.store.read() as conn:
        rows = conn.execute(
            select(u.user_id)
            .distinct()
            .select_from(schema.events.join(schema.users, e.user_idx == u.idx))
            .where(e.ts >= start, e.ts < end)
        ).all()
    return sorted(str(row[0]) for row in rows)


def _feedback(
    served: list[dict], users: list[str], times: list[float], rng: np.random.Generator
) -> list[dict]:
    """Clicks that fall with the rank, and a few dislikes, on the lists served."""
    events = []
    for answer, user, ts in zip(served, users, times, strict=True):
        for rank, item in enumerate(answer["items"]):
            draw = rng.random()
            kind = "click" if draw < 0.25 / (1 + rank) else "dislike" if draw > 0.985 else None
            if kind is not None:
                events.append(
                    {
                        "user_id": user,
                        "item_id": item["item_id"],
                        "type": kind,
                        "timestamp": ts + 30.0 + rank,
                        "recommendation_id": answer["recommendation_id"],
                    }
                )
    return events


def _audit(flywheel: str, url: str, key_file: Path) -> None:
    """An admin key (kept for the browser) and an erasure: two audit log rows."""
    created = subprocess.run(
        [flywheel, "keys", "create", "--scope", "admin", "--json", "--db", url],
        check=True,
        capture_output=True,
        text=True,
    )
    key_file.write_text(json.loads(created.stdout)["key"])
    subprocess.run([flywheel, "users", "erase", "u299", "--db", url], check=True)


def _busiest_user(path: Path) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        row = db.execute(
            "SELECT user_id FROM impressions GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()
    return str(row[0])


if __name__ == "__main__":
    main()
