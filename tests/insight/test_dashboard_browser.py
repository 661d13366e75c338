"""The dashboard in a real headless chromium (driven over the DevTools protocol), served by a
real ``flywheel serve`` process: every page loads without errors and draws, a user lookup shows
recommendations without logging an impression, admin actions need an admin key."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflywheel as dfw
from helpers import start_server
from insight.cdp import Browser

pytestmark = pytest.mark.browser
READY = "document.getElementById('view').dataset.state === 'ready'"
PAGES = ("", "models", "experiments", "labels", "users", "items", "decisions")


def _store(url: str) -> tuple[str, str]:
    """Ten simulated days with the loop on (real models, impressions, feedback). Returns the
    champion and the newest other version."""
    flywheel = Path(sys.executable).with_name("flywheel")
    simulate = [str(flywheel), "simulate", "--days", "10", "--users", "80", "--db", url]
    subprocess.run(simulate, capture_output=True, check=True, timeout=600)
    with dfw.open(url) as wheel:
        models = wheel.models()
    champion = next(m["version"] for m in models if m["status"] == "champion")
    other = next(m["version"] for m in reversed(models) if m["status"] != "champion")
    return champion, other


def _experiment(url: str, days: int = 3) -> str:
    """An A/B test of the champion against a fresh candidate, started ``days`` ago, with a list
    served to every user each day and clicks on the top slots. Returns its id."""
    now = time.time()
    with dfw.open(url, seed=0) as wheel:
        champion = wheel.registry.champion()
        assert champion is not None
        candidate = wheel.train("popularity", budget=1, now=now - (days + 1) * 86_400.0)
        arms = [
            {"name": "control", "model_version": champion["version"], "weight": 50},
            {"name": "candidate", "model_version": candidate["version"], "weight": 50},
        ]
        spec = {"name": "dashboard test", "arms": arms, "metric": "clicks"}
        experiment = wheel.loop.rollout.experiments.create(spec, now=now - days * 86_400.0)
        users = [f"u{n}" for n in range(80)]
        for day in range(days, 0, -1):
            at = now - day * 86_400.0 + 3_600.0
            served = wheel.recommend_many(users, k=5, now=at)
            clicks = [
                {
                    "user_id": user,
                    "item_id": answer["items"][rank]["item_id"],
                    "type": "click",
                    "timestamp": at + 60.0 + rank,
                    "recommendation_id": answer["recommendation_id"],
                }
                for n, (user, answer) in enumerate(zip(users, served, strict=True))
                for rank in range(len(answer["items"]))
                if (n + day + rank) % (3 + rank) == 0
            ]
            wheel.track_many(clicks)
        wheel.flush()
    return str(experiment["id"])


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str, str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'dash.db'}"
    champion, other = _store(url)
    return url, champion, other, _experiment(url)


@pytest.fixture
def server(store_url: tuple[str, str, str, str]) -> Iterator[str]:
    # The loop is off: it would act on the staged experiment while the test reads it.
    env = {**os.environ, "FLYWHEEL_LOOP_ENABLED": "false"}
    process, port = start_server(store_url[0], env)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def browser(chromium: str, tmp_path: Path) -> Iterator[Browser]:
    with Browser(chromium, tmp_path / "profile") as opened:
        yield opened


def _get(base: str, path: str, key: str | None = None) -> tuple[int, dict]:
    conn = http.client.HTTPConnection(base.split("/")[2], timeout=60)
    conn.request("GET", path, headers={"Authorization": f"Bearer {key}"} if key else {})
    response = conn.getresponse()
    return response.status, json.loads(response.read() or b"null")


def _open(browser: Browser, url: str) -> None:
    browser.goto(url)
    browser.wait_for(f"{READY} || document.getElementById('view').dataset.state === 'error'", 90)
    browser.pump(1.0)  # charts draw on the next animation frames; their errors are collected


def test_every_page_loads_without_errors_and_draws(browser: Browser, server: str) -> None:
    status, health = _get(server, "/v1/health/flywheel")
    assert status == 200
    for page in PAGES:
        _open(browser, f"{server}#/{page}")
        assert browser.evaluate(READY), (page, browser.text()[:1500])
    # The overview: verdict, four pictures, each condition's evidence drawn, never a raw dict.
    _open(browser, f"{server}#/")
    text = browser.text()
    assert f"Flywheel: {health['verdict']}" in text and "Next:" in text
    assert "it becomes a better model" in text
    # Charts draw on animation frames after the view is ready: slow on a loaded machine.
    browser.wait_for("document.querySelectorAll('.main-svg').length >= 8", 30)
    assert browser.evaluate("document.querySelectorAll('.condition .chart').length") >= 3
    assert "{" not in browser.evaluate(
        "[...document.querySelectorAll('.condition')].map(e => e.innerText).join(' ')"
    )
    assert "(version:" not in text and "'rho'" not in text
    assert "Model quality by version" in text and "champion (serving now)" in text
    _open(browser, f"{server}#/models")
    browser.wait_for("document.querySelectorAll('.main-svg').length >= 1", 30)
    assert "Read-only" in browser.text() and not browser.evaluate(
        "document.querySelectorAll('button.action').length"
    )
    assert browser.errors() == []


def test_the_experiment_page_draws_the_lift_over_time(
    browser: Browser, server: str, store_url: tuple[str, str, str, str]
) -> None:
    experiment = store_url[3]
    status, body = _get(server, f"/v1/dashboard/experiments/{experiment}")
    assert status == 200 and body["decision"]["verdict"]
    assert [p["arm"] for p in body["timeline"]] == ["candidate"] * len(body["timeline"])
    assert len(body["timeline"]) >= 3  # one point per day since the start
    last = body["timeline"][-1]
    assert (last["lift"], last["low"], last["high"]) == (
        body["analysis"][0]["result"]["lift"],
        body["analysis"][0]["result"]["low"],
        body["analysis"][0]["result"]["high"],
    )
    assert _get(server, "/v1/dashboard/experiments/nope")[0] == 404
    _open(browser, f"{server}#/experiments?id={experiment}")
    assert browser.evaluate(READY), browser.text()[:1500]
    text = browser.text()
    assert "Lift over time" in text and "No day with two users" not in text
    # Two charts: the lift per arm and the lift over time, with its band, line and zero line.
    browser.wait_for("document.querySelectorAll('.card .main-svg').length >= 2", 30)
    drawn = "document.querySelectorAll('.card .chart')[1].querySelectorAll('.scatterlayer .trace')"
    assert browser.evaluate(f"{drawn}.length") == 3
    assert browser.evaluate("document.querySelectorAll('.card .chart')[1].querySelector('.zl')")
    assert browser.errors() == []


def test_user_lookup_shows_recommendations_and_logs_nothing(
    browser: Browser, server: str, store_url: tuple[str, str, str, str]
) -> None:
    user = next(
        f"u{n}"
        for n in range(80)
        if _get(server, f"/v1/dashboard/users/u{n}")[1]["served"]
        and _get(server, f"/v1/dashboard/users/u{n}")[1]["history"]
    )
    before = _get(server, "/v1/stats")[1]["impressions"]
    _open(browser, f"{server}#/users")
    browser.fill("#user-id", user)
    browser.click("form.lookup button")
    browser.wait_for(f"location.hash.includes('id={user}') && {READY}", 60)
    browser.wait_for(f"document.body.innerText.includes('Recommendations for {user}')", 30)
    text = browser.text()
    assert f"Source: champion model {store_url[1]}" in text
    links = browser.evaluate("[...document.querySelectorAll('.card a')].map(a => a.textContent)")
    assert len([link for link in links if link.startswith("i")]) >= 10  # items, with links
    assert "History (newest first)" in text and "Lists served to this user" in text
    # Follow an item link: the item page with its similar items.
    browser.click(".card a[href^='#/items']")
    browser.wait_for(f"location.hash.includes('items') && {READY}", 60)
    assert "Similar items" in browser.text()
    assert _get(server, "/v1/stats")[1]["impressions"] == before  # the lookup logged nothing
    assert browser.errors() == []


def _keys(url: str, scope: str) -> str:
    flywheel = Path(sys.executable).with_name("flywheel")
    done = subprocess.run(
        [str(flywheel), "keys", "create", "--scope", scope, "--json", "--db", url],
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(done.stdout)["key"])


def test_admin_actions_need_an_admin_key(browser: Browser, chromium: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    champion, candidate = _store(url)
    admin, ingest = _keys(url, "admin"), _keys(url, "ingest")
    process, port = start_server(url)
    base = f"http://127.0.0.1:{port}/"
    try:
        # An ingest key reads nothing and gets no action buttons.
        _open(browser, f"{base}#/models?key={ingest}")
        assert "scope 'ingest'" in browser.text()
        assert not browser.evaluate("document.querySelectorAll('button.action').length")
        # The admin key, typed into the page: promote, confirm declined, then accepted.
        browser.fill("#key-input", admin)
        browser.click("#key-form button[type=submit]")
        browser.wait_for(f"{READY} && document.querySelectorAll('button.action').length > 0", 60)
        button = (
            "[...document.querySelectorAll('button.action')]"
            f".find(b => b.textContent === 'Promote {candidate}')"
        )
        browser.accept_dialogs = False
        browser.evaluate(f"{button}.click()")
        browser.pump(1.0)
        assert _champion(base, admin) == champion
        browser.accept_dialogs = True
        browser.evaluate(f"{button}.click()")
        browser.wait_for("document.body.innerText.includes('done.')", 30)
        assert _champion(base, admin) == candidate
        assert any(candidate in d for d in browser.dialogs())
        assert browser.evaluate("sessionStorage.getItem('flywheel-key')") == admin
        assert browser.errors() == []
    finally:
        process.terminate()
        process.wait(timeout=30)


def _champion(base: str, key: str) -> str:
    models = _get(base, "/v1/models", key)[1]["models"]
    return next(m["version"] for m in models if m["status"] == "champion")
