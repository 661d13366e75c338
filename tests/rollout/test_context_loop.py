"""The server's loop refits the contextual re-ranker on its schedule, in a child process: only
with declared context fields, again only after the interval and new lists (or a new champion),
and a failed refit is a reported step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

import dataflywheel as dfw
from dataflywheel.loop.context_job import last_check
from dataflywheel.loop.scheduler import Loop
from dataflywheel.store import schema
from serve.test_context_rerank import SETTINGS, generate, top

QUIET = {
    "retrain_min_new_events": 10**9,
    "retrain_interval_seconds": 10**12,
    "value_interval_seconds": 0,
}
HOUR = 3_600.0


def server_loop(wheel: dfw.Flywheel) -> Loop:
    return Loop(wheel.store, wheel.registry, wheel.trainer, wheel.settings, isolated=True)


def server_loop_in_process(wheel: dfw.Flywheel) -> Loop:
    """A loop that is not the server's (the simulator's, the CLI's): it never refits."""
    return Loop(wheel.store, wheel.registry, wheel.trainer, wheel.settings)


def audit_actors(wheel: dfw.Flywheel) -> list[str]:
    a = schema.audit_log.c
    with wheel.store.read() as conn:
        rows = conn.execute(select(a.actor).where(a.action == "context_rerank").order_by(a.id))
        return [row.actor for row in rows]


@pytest.mark.slow
def test_the_loop_switches_reranking_on_then_waits_for_new_lists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    end = generate(url, signal=True)
    settings = {**SETTINGS, **QUIET, "exploration": {"name": "greedy"}}
    with dfw.open(url, **settings) as wheel:
        # Before: the champion mixes the categories (served before the fit's time).
        answer = wheel.recommend("u20", 3, context={"device": "mobile"}, now=end - 1)
        assert {item["item_id"][0] for item in answer["items"]} == {"a", "b"}
        loop = server_loop(wheel)
        assert not server_loop_in_process(wheel).context_due(end)

        step = loop.run_once(end)
        assert step["action"] == "skipped"
        report = step["context_rerank"]
        assert report["verdict"] == "pass" and report["active"], report
        assert report["champion"] == "v1"
        assert audit_actors(wheel) == ["loop"]  # the child recorded the verdict

        # Fresh and no list served since: not due, even long after.
        assert "context_rerank" not in loop.run_once(end + 60)
        assert not loop.context_due(end + 10 * HOUR)
        # A list served since: due once the interval has passed, not before.
        wheel.recommend("u3", 3, context={"device": "mobile"}, now=end + 30)
        wheel.flush()
        assert not loop.context_due(end + HOUR - 1)
        assert loop.context_due(end + HOUR)
        # Serving follows the child's verdict.
        wheel.serving.invalidate()
        assert all(item.startswith("a") for item in top(wheel, "mobile"))
        assert all(item.startswith("b") for item in top(wheel, "desktop"))
        # A new champion makes it due at once: the check replays the champion's ranking.
        version = wheel.trainer.train("popularity", 5, now=end + 40)["version"]
        wheel.registry.promote(version, "test")
        assert loop.context_due(end + 60)


def small_world(url: str, **settings: Any) -> float:
    """A popularity champion and 20 lists served with a device in their context."""
    rng = np.random.default_rng(0)
    with dfw.open(url, **settings) as wheel:
        now = 1_700_000_000.0
        views = [
            {"user_id": f"u{n}", "item_id": f"i{m}", "type": "view", "timestamp": now + 10 * n + k}
            for n in range(30)
            for k, m in enumerate(rng.choice(12, size=6, replace=False))
        ]
        assert wheel.track_many(views).accepted == len(views)
        assert wheel.train("popularity", budget=5)["status"] == "champion"
        for n in range(20):
            device = "mobile" if n % 2 else "desktop"
            wheel.recommend(f"u{n}", 3, context={"device": device}, now=now + 1_000 + n)
        wheel.flush()
    return now + 2_000


def test_without_declared_context_fields_the_loop_never_refits(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'f.db'}"
    now = small_world(url, **QUIET)
    with dfw.open(url, **QUIET) as wheel:
        loop = server_loop(wheel)
        assert not loop.context_due(now)
        assert "context_rerank" not in loop.run_once(now)
    off = {**QUIET, "context_fields": ["device"], "context_rerank_interval_seconds": 0}
    with dfw.open(url, **off) as wheel:
        assert not server_loop(wheel).context_due(now)
        assert audit_actors(wheel) == []


def test_a_failed_refit_is_a_reported_step_and_waits_out_the_interval(store_url: str) -> None:
    url = store_url  # the child reaches PostgreSQL through FLYWHEEL_DB as well
    settings = {**QUIET, "context_fields": ["device"]}
    now = small_world(url, **settings)
    with dfw.open(url, **settings) as wheel:
        loop = server_loop(wheel)
        assert loop.context_due(now)
        step = loop.run_once(now)  # 20 lists: too few to fit, the child exits with the reason
        assert step["action"] == "skipped"
        assert "at least 100" in step["context_rerank"]["error"], step
        assert loop.child is None
        assert "context_rerank" not in loop.run_once(now + 60)
        assert loop.context_due(now + HOUR)
        assert audit_actors(wheel) == []


def test_a_reranker_switched_off_by_hand_stays_off(tmp_path: Path) -> None:
    from dataflywheel.loop.context_gate import switch_off

    url = f"sqlite:///{tmp_path / 'f.db'}"
    settings = {**QUIET, "context_fields": ["device"]}
    now = small_world(url, **settings)
    with dfw.open(url, **settings) as wheel:
        switch_off(wheel.store, reason="test")
        found = last_check(wheel.store)
        assert found is not None and found[1]["verdict"] == "off"
        assert not server_loop(wheel).context_due(now + 10 * HOUR)
