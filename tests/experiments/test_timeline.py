"""The experiment timeline: cumulative lift per day with the status's sequential interval,
checked against values computed by hand on a store of eight users over two days."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.report import experiment_status, experiment_timeline
from dataflywheel.store import schema

DAY = 86_400.0
START = 19_676 * DAY + 3_600.0  # 2023-11-15 01:00 UTC
ALPHA = 0.05
TUNING = 2 * 100.0  # min_sample_size per arm times two arms
# Clicks per user on the list they were shown: day 0 users, then one more click of c0 and two
# users first exposed on day 1 (they must not count in day 0's point).
DAY0 = {"c0": 1, "c1": 0, "c2": 2, "t0": 2, "t1": 3, "t2": 1}
DAY1 = {"c0": 1, "c3": 1, "t3": 4}


@pytest.fixture
def flywheel(store_url: str) -> Iterator[dfw.Flywheel]:
    with dfw.open(store_url, seed=0) as handle:
        history = [
            {
                "user_id": f"h{u}",
                "item_id": f"i{(u + j) % 10}",
                "type": "click",
                "timestamp": 1e9 + j,
            }
            for u in range(10)
            for j in range(5)
        ]
        handle.track_many(history)
        handle.train("popularity", budget=1)
        handle.train("popularity", budget=1)
        handle.loop.rollout.config = RolloutSettings(
            experiment="ab", min_sample_size=100, pre_period_seconds=0, alpha=ALPHA
        )
        yield handle


def _run(flywheel: dfw.Flywheel) -> dict[str, Any]:
    arms = [
        {"name": "control", "model_version": "v1", "weight": 50},
        {"name": "candidate", "model_version": "v2", "weight": 50},
    ]
    spec = {"arms": arms, "metric": "clicks", "min_sample_size": 100}
    experiment = flywheel.loop.rollout.experiments.create(spec, now=START)
    exposed = {user: START + 10 for user in ("c0", "c1", "c2", "t0", "t1", "t2")}
    exposed.update({"c3": START + DAY + 10, "t3": START + DAY + 10})
    with flywheel.store.write() as conn:
        conn.execute(
            insert(schema.impressions),
            [
                {
                    "recommendation_id": f"r-{user}",
                    "user_id": user,
                    "ts": ts,
                    "model_version": "v1" if user[0] == "c" else "v2",
                    "policy": "greedy",
                    "experiment_id": experiment["id"],
                    "arm": "control" if user[0] == "c" else "candidate",
                    "item_ids": ["i0", "i1", "i2", "i3", "i4"],
                    "scores": [1.0] * 5,
                    "propensities": [1.0] * 5,
                }
                for user, ts in exposed.items()
            ],
        )
    clicks = [
        {
            "user_id": user,
            "item_id": f"i{k}",
            "type": "click",
            "timestamp": at + 20 + k,
            "recommendation_id": f"r-{user}",
        }
        for at, counts in ((START, DAY0), (START + DAY, DAY1))
        for user, n in counts.items()
        for k in range(n)
    ]
    assert flywheel.track_many(clicks).accepted == len(clicks)
    return experiment


def _by_hand(control: list[float], treatment: list[float]) -> tuple[float, float, float]:
    """Lift, and the normal-mixture confidence sequence written out from its definition."""
    c, t = np.array(control), np.array(treatment)
    lift = t.mean() - c.mean()
    se = math.sqrt(c.var(ddof=1) / c.size + t.var(ddof=1) / t.size)
    log_term = -2.0 * math.log(ALPHA)
    rho2 = (log_term + math.log(log_term + 1.0)) / TUNING
    n_rho2 = (c.size + t.size) * rho2
    half = se * math.sqrt(2.0 * (n_rho2 + 1.0) / n_rho2 * math.log(math.sqrt(n_rho2 + 1.0) / ALPHA))
    return lift, lift - half, lift + half


def test_the_timeline_is_the_cumulative_sequential_lift_at_each_day_end(
    flywheel: dfw.Flywheel,
) -> None:
    experiment = _run(flywheel)
    now = START + DAY + 3_600.0
    config = flywheel.loop.rollout.config
    points = experiment_timeline(flywheel.store, experiment, config, now)
    assert [p["date"] for p in points] == ["2023-11-15", "2023-11-16"]
    assert all(p["arm"] == "candidate" for p in points)
    day0 = _by_hand([1, 0, 2], [2, 3, 1])  # c3 and t3 are not exposed yet
    day1 = _by_hand([2, 0, 2, 1], [2, 3, 1, 4])  # c0's late click counts on day 1
    for point, (lift, low, high), n in zip(points, (day0, day1), (3, 4), strict=True):
        assert (point["n_control"], point["n_treatment"]) == (n, n)
        assert point["lift"] == pytest.approx(lift, abs=1e-12)
        assert point["low"] == pytest.approx(low, rel=1e-9)
        assert point["high"] == pytest.approx(high, rel=1e-9)
    # The last point is what the status says now.
    result = experiment_status(flywheel.store, experiment, config, now)["analysis"][0]["result"]
    assert (points[-1]["lift"], points[-1]["low"], points[-1]["high"]) == pytest.approx(
        (result["lift"], result["low"], result["high"])
    )


def test_a_stopped_experiment_ends_at_its_stop_and_interleaving_has_no_timeline(
    flywheel: dfw.Flywheel,
) -> None:
    experiment = _run(flywheel)
    stopped = {**experiment, "stopped_at": START + 3_600.0}  # before any click of day 1
    points = experiment_timeline(
        flywheel.store, stopped, flywheel.loop.rollout.config, START + 9 * DAY
    )
    assert len(points) == 1 and points[0]["date"] == "2023-11-15"
    assert points[0]["lift"] == pytest.approx(_by_hand([1, 0, 2], [2, 3, 1])[0])
    interleaved = {**experiment, "type": "interleaving"}
    assert (
        experiment_timeline(flywheel.store, interleaved, flywheel.loop.rollout.config, START) == []
    )
