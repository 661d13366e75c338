"""Watch after promotion: a champion whose lists are answered clearly less often than its
predecessor's is rolled back by the loop, with the reason in the audit log and on /v1/models; one
as good, or one without enough impressions yet, stays."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import insert, select

import dataflywheel as dfw
from dataflywheel.api.app import create_app
from dataflywheel.config import RolloutSettings, load_settings
from dataflywheel.store import schema

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

T0 = 1.7e9
HOUR = 3_600.0
PROMOTED = T0 + 10 * HOUR
SERVED = 400


@pytest.fixture
def wheel(store_url: str) -> Iterator[dfw.Flywheel]:
    """v1 champion since T0, v2 promoted at PROMOTED; the loop would not retrain on its own."""
    handle = dfw.open(
        store_url, retrain_min_new_events=10**9, retrain_interval_seconds=10**9, seed=0
    )
    for n in range(2):
        handle.registry.register(
            name="popularity",
            params={},
            metrics={"ndcg@10": 0.1},
            snapshot_id="s",
            artifact="none",
            fit_seconds=0.0,
            created_at=T0 + n,
        )
    handle.registry.promote("v1", "first model", T0)
    handle.registry.promote("v2", "beats v1", PROMOTED)
    handle.loop.rollout.config = RolloutSettings(watch_seconds=HOUR, watch_min_impressions=100)
    try:
        yield handle
    finally:
        handle.close()


def serve(wheel: dfw.Flywheel, version: str, start: float, n: int, answered: float) -> None:
    """``n`` lists served by ``version`` from ``start`` on, the first ``answered`` share of
    them answered by a click (every fifth of those by a like as well)."""
    tag = f"{version}-{int(start)}"
    impressions, events = [], []
    for k in range(n):
        rec, user, ts = f"{tag}-{k}", f"u{k % 50}", start + k
        impressions.append(
            {
                "recommendation_id": rec,
                "user_id": user,
                "ts": ts,
                "model_version": version,
                "policy": "greedy",
                "item_ids": ["i1", "i2"],
                "scores": [1.0, 0.5],
                "propensities": [1.0, 1.0],
            }
        )
        if k < answered * n:
            kinds = ["click", "like"] if k % 5 == 0 else ["click"]
            events += [
                {
                    "event_id": f"{rec}-{kind}",
                    "user_id": user,
                    "item_id": "i1",
                    "type": kind,
                    "timestamp": ts + 1,
                    "recommendation_id": rec,
                }
                for kind in kinds
            ]
        elif k % 7 == 0:  # a skip is not a success
            events.append(
                {
                    "event_id": f"{rec}-skip",
                    "user_id": user,
                    "item_id": "i2",
                    "type": "skip",
                    "timestamp": ts + 1,
                    "recommendation_id": rec,
                }
            )
    with wheel.store.write() as conn:
        conn.execute(insert(schema.impressions), impressions)
    wheel.track_many(events)


def audit(wheel: dfw.Flywheel) -> list[Any]:
    with wheel.store.read() as conn:
        return list(conn.execute(select(schema.audit_log)).all())


def test_a_worse_champion_is_rolled_back(wheel: dfw.Flywheel, store_url: str) -> None:
    serve(wheel, "v1", PROMOTED - HOUR, SERVED, answered=0.30)
    serve(wheel, "v2", PROMOTED, SERVED, answered=0.10)
    step = wheel.run_loop_once(now=PROMOTED + SERVED + 60)
    assert step["action"] == "rolled_back" and step["version"] == "v1", step
    assert wheel.registry.champion()["version"] == "v1"  # type: ignore[index]
    assert wheel.registry.get("v2")["status"] == "retired"
    [row] = audit(wheel)
    assert (row.actor, row.action, row.subject) == ("loop", "rollback", "v2")
    assert row.detail["verdict"] == "regressed" and row.detail["restored"] == "v1"
    assert row.detail["rate"] == pytest.approx(0.10) and row.detail["previous_rate"] == 0.30
    reasons = [t["reason"] for t in wheel.registry.transitions() if t["version"] == "v1"]
    assert reasons[-1].startswith("rollback: watch after promotion: v2 answered 10.00%")
    with TestClient(create_app(load_settings(db=store_url))) as client:
        models = {m["version"]: m for m in client.get("/v1/models").json()["models"]}
    assert models["v2"]["metrics"]["watch"]["reason"] == row.detail["reason"]
    assert models["v2"]["metrics"]["ndcg@10"] == 0.1, "holdout metrics are kept"
    # The restored champion is not watched against the one it replaced: no ping-pong.
    again = wheel.run_loop_once(now=PROMOTED + SERVED + 120)
    assert again["action"] == "skipped" and "watch" not in again, again


def test_an_equally_good_champion_stays(wheel: dfw.Flywheel) -> None:
    serve(wheel, "v1", PROMOTED - HOUR, SERVED, answered=0.30)
    serve(wheel, "v2", PROMOTED, SERVED, answered=0.30)
    step = wheel.run_loop_once(now=PROMOTED + SERVED + 60)
    assert step["action"] == "skipped", step
    assert step["watch"]["verdict"] == "holding" and step["watch"]["p_value"] > 0.05
    assert wheel.registry.champion()["version"] == "v2"  # type: ignore[index]
    assert audit(wheel) == []


def test_too_few_impressions_is_no_reason_to_roll_back(wheel: dfw.Flywheel) -> None:
    serve(wheel, "v1", PROMOTED - HOUR, SERVED, answered=0.30)
    serve(wheel, "v2", PROMOTED, 40, answered=0.0)
    step = wheel.run_loop_once(now=PROMOTED + 100)
    assert step["watch"]["verdict"] == "collecting", step
    assert wheel.registry.champion()["version"] == "v2"  # type: ignore[index]
    # After the watch window the champion is no longer compared at all.
    serve(wheel, "v2", PROMOTED + 100, SERVED, answered=0.0)
    late = wheel.run_loop_once(now=PROMOTED + HOUR + 1)
    assert "watch" not in late and wheel.registry.champion()["version"] == "v2"  # type: ignore[index]
    assert audit(wheel) == []
