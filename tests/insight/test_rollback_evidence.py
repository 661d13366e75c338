"""Condition 3 of the health report shows the watch after promotion's automatic rollbacks: the
audit row (action ``rollback``) and the retired version's ``metrics.watch``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.insight import health
from rollout.test_watch import HOUR, PROMOTED, SERVED, T0, serve


@pytest.fixture
def wheel(store_url: str) -> Iterator[dfw.Flywheel]:
    """v1 champion since T0, v2 promoted at PROMOTED, watched for an hour."""
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


def rollbacks(wheel: dfw.Flywheel) -> dict[str, object]:
    [condition] = [c for c in health(wheel.store)["conditions"] if c["id"] == 3]
    evidence: dict[str, object] = condition["evidence"]["watch_rollbacks"]
    return evidence


def test_an_automatic_rollback_is_evidence_of_condition_3(wheel: dfw.Flywheel) -> None:
    serve(wheel, "v1", PROMOTED - HOUR, SERVED, answered=0.30)
    serve(wheel, "v2", PROMOTED, SERVED, answered=0.10)
    assert rollbacks(wheel) == {"count": 0, "latest": None}
    step = wheel.run_loop_once(now=PROMOTED + SERVED + 60)
    assert step["action"] == "rolled_back", step
    found = rollbacks(wheel)
    assert found["count"] == 1
    latest = found["latest"]
    assert isinstance(latest, dict)
    assert (latest["version"], latest["restored"], latest["on_model"]) == ("v2", "v1", True)
    assert latest["impressions"] == SERVED and latest["previous_impressions"] == SERVED
    assert latest["lift"] == pytest.approx(-0.2) and latest["high"] < 0
    assert latest["p_value"] < 0.05
    assert str(latest["reason"]).startswith("watch after promotion: v2 answered 10.00%")


def test_a_manual_rollback_is_not_counted(wheel: dfw.Flywheel) -> None:
    """Only the watch's rollbacks carry evidence of what users perceived."""
    wheel.registry.rollback("operator's call", PROMOTED + 10)
    assert rollbacks(wheel) == {"count": 0, "latest": None}
