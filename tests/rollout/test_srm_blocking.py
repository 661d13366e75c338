"""Sample ratio mismatch blocks an experiment's decision, and the loop never promotes through it.

Exposure is written straight into the impression log, as a broken assignment or a crashing arm
would leave it; clicks come back through ingestion as in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.config import RolloutSettings
from dataflywheel.experiments.report import experiment_status

T0 = 1.7e9
DAY = 86_400.0


@pytest.fixture
def flywheel(store_url: str) -> Iterator[dfw.Flywheel]:
    with dfw.open(store_url, seed=0) as handle:
        history = [
            {
                "user_id": f"h{u}",
                "item_id": f"i{(u + j) % 10}",
                "type": "click",
                "timestamp": T0 + j,
            }
            for u in range(10)
            for j in range(5)
        ]
        handle.track_many(history)
        handle.train("popularity", budget=1)  # v1, the champion
        handle.train("popularity", budget=1)  # v2, the candidate
        handle.loop.rollout.config = RolloutSettings(
            experiment="ab",
            min_sample_size=100,
            pre_period_seconds=0,
            experiment_max_seconds=DAY,
        )
        yield handle


def _start(flywheel: dfw.Flywheel) -> dict[str, Any]:
    arms = [
        {"name": "control", "model_version": "v1", "weight": 50},
        {"name": "candidate", "model_version": "v2", "weight": 50},
    ]
    return flywheel.loop.rollout.experiments.create({"arms": arms, "metric": "ctr"}, now=T0)


def _expose(
    flywheel: dfw.Flywheel, experiment: dict[str, Any], split: dict[str, int], first: int = 0
) -> None:
    """One logged list of five items per user, ``split[arm]`` users per arm numbered from
    ``first`` (``executemany`` on SQLite, ``COPY`` on PostgreSQL: 10⁵ rows in about a second)."""
    versions = {a["name"]: a["model_version"] for a in experiment["arms"]}
    items, ones = '["i0", "i1", "i2", "i3", "i4"]', "[1.0, 1.0, 1.0, 1.0, 1.0]"
    rows = [
        (f"{experiment['id']}-{arm}-{n}", f"{arm}-{n}", T0 + 1, versions[arm], "epsilon_greedy",
         experiment["id"], arm, items, ones, ones)
        for arm, users in split.items()
        for n in range(first, first + users)
    ]  # fmt: skip
    columns = (
        "recommendation_id, user_id, ts, model_version, policy, experiment_id, arm, item_ids, "
        "scores, propensities"
    )
    with flywheel.store.write() as conn:
        raw: Any = conn.connection.dbapi_connection
        if conn.dialect.name == "sqlite":
            marks = ", ".join("?" * len(rows[0]))
            raw.executemany(f"INSERT INTO impressions ({columns}) VALUES ({marks})", rows)
            return
        with (
            raw.cursor() as cursor,
            cursor.copy(f"COPY impressions ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)


def _click(
    flywheel: dfw.Flywheel,
    experiment: dict[str, Any],
    split: dict[str, int],
    rates: dict[str, float],
) -> None:
    """Clicks on each logged item with the arm's probability (the candidate is far better)."""
    rng = np.random.default_rng(0)
    events = [
        {
            "user_id": f"{arm}-{n}",
            "item_id": f"i{k}",
            "type": "click",
            "timestamp": T0 + 2,
            "recommendation_id": f"{experiment['id']}-{arm}-{n}",
        }
        for arm, users in split.items()
        for n in range(users)
        for k in range(5)
        if rng.random() < rates[arm]
    ]
    assert flywheel.track_many(events).accepted == len(events)


def _champion(flywheel: dfw.Flywheel) -> str | None:
    champion = flywheel.registry.champion()
    return None if champion is None else str(champion["version"])


def test_a_half_percent_skew_on_a_hundred_thousand_users_blocks(flywheel: dfw.Flywheel) -> None:
    experiments, config = flywheel.loop.rollout.experiments, flywheel.loop.rollout.config
    skewed = _start(flywheel)
    _expose(flywheel, skewed, {"control": 50_600, "candidate": 49_400})
    status = experiment_status(flywheel.store, skewed, config, T0 + 60)
    assert status["srm"]["mismatch"] is True
    assert status["srm"]["p_value"] == pytest.approx(1.48e-4, rel=0.01)
    assert status["decision"]["verdict"] == "blocked"
    assert "sample ratio mismatch" in status["decision"]["reason"]
    assert status["decision"]["arm"] is None
    assert [arm["users"] for arm in status["arms"]] == [50_600, 49_400]
    experiments.finish(skewed["id"], "test", now=T0 + 60)

    fair = _start(flywheel)
    _expose(flywheel, fair, {"control": 10_050, "candidate": 9_950})  # p = 0.48
    status = experiment_status(flywheel.store, fair, config, T0 + 60)
    assert status["srm"]["mismatch"] is False
    assert status["decision"]["verdict"] != "blocked"


def test_uneven_weights_are_not_a_mismatch(flywheel: dfw.Flywheel) -> None:
    arms = [
        {"name": "control", "model_version": "v1", "weight": 80},
        {"name": "candidate", "model_version": "v2", "weight": 20},
    ]
    experiment = flywheel.loop.rollout.experiments.create({"arms": arms}, now=T0)
    _expose(flywheel, experiment, {"control": 4_000, "candidate": 1_000})
    config = flywheel.loop.rollout.config
    status = experiment_status(flywheel.store, experiment, config, T0 + 60)
    assert status["srm"]["mismatch"] is False
    _expose(flywheel, experiment, {"control": 500}, first=4_000)  # now 4 500 / 1 000, not 80/20
    status = experiment_status(flywheel.store, experiment, config, T0 + 60)
    assert status["srm"]["mismatch"] is True
    assert status["decision"]["verdict"] == "blocked"


@pytest.mark.parametrize(
    ("split", "blocked"),
    [({"control": 700, "candidate": 500}, True), ({"control": 600, "candidate": 600}, False)],
)
def test_the_loop_promotes_only_without_a_mismatch(
    flywheel: dfw.Flywheel, split: dict[str, int], blocked: bool
) -> None:
    rollout, registry = flywheel.loop.rollout, flywheel.registry
    experiment = _start(flywheel)
    assert registry.get("v2")["status"] == "experiment"
    _expose(flywheel, experiment, split)
    _click(flywheel, experiment, split, {"control": 0.2, "candidate": 0.4})

    step = rollout.advance(T0 + 3_600)
    if not blocked:
        assert step is not None and step["action"] == "promoted", step
        assert _champion(flywheel) == "v2"
        return

    assert step is not None and step["action"] == "waiting", step
    assert "sample ratio mismatch" in step["reason"]
    assert _champion(flywheel) == "v1"
    assert registry.get("v2")["status"] == "experiment"
    status = experiment_status(flywheel.store, experiment, rollout.config, T0 + 3_600)
    ctr = {arm["name"]: arm["metrics"]["ctr"] for arm in status["arms"]}
    assert ctr["candidate"] > 1.5 * ctr["control"]  # better, and still not promoted

    step = rollout.advance(T0 + DAY)  # the deadline: the blocked experiment ends, v2 retires
    assert step is not None and step["action"] == "kept", step
    assert _champion(flywheel) == "v1"
    assert registry.get("v2")["status"] == "retired"
    assert "sample ratio mismatch" in registry.transitions()[-1]["reason"]
    done = rollout.experiments.get(experiment["id"])
    assert done["status"] == "completed" and done["decision"]["verdict"] == "blocked"
    assert rollout.advance(T0 + DAY + 1) is None
