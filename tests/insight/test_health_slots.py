"""Condition 3's model-vs-exploration comparison on stores served the way ``aimed_epsilon`` serves:
the top positions are never explored and explored slots grow more frequent toward the bottom, so
the model's slots hold the top positions' click advantage. Only a click-through at the same
positions may count as the users' preference for the model's picks.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert

import dataflywheel as dfw
from dataflywheel.insight import health
from dataflywheel.store import schema
from dataflywheel.store.bulk import insert_events
from dataflywheel.store.store import Store

DAY = 86_400.0
BASE_DAY = 19_700  # 2023-12-08
LISTS = 2_000  # the comparison's sample (RANDOMNESS_SAMPLE)
LENGTH = 10
ITEMS = [f"i{n}" for n in range(200)]
# Positions 1-3 are never explored; below them, more and more often.
EXPLORE = np.array([0.0, 0.0, 0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4])
# Click probability by position only: users mostly click near the top of the list.
BY_POSITION = 0.3 / np.arange(1, LENGTH + 1)


def build(store: Store, model_boost: float, seed: int = 3) -> None:
    """``LISTS`` model-served lists over 8 days; a slot is clicked with its position's
    probability, times ``model_boost`` when the model chose it (propensity ≥ 0.5)."""
    rng = np.random.default_rng(seed)
    store.upsert_entities("items", [{"id": i} for i in ITEMS], BASE_DAY * DAY)
    served: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    for n in range(LISTS):
        rid, user = uuid.uuid4().hex, n % 300
        at = (BASE_DAY + n % 8) * DAY + float(rng.uniform(0, 20 * 3600))
        shown = [str(i) for i in rng.choice(ITEMS, size=LENGTH, replace=False)]
        explored = rng.random(LENGTH) < EXPLORE
        props = np.where(explored, 0.05, 0.9)
        props[:3] = 1.0
        served.append(
            {
                "recommendation_id": rid,
                "user_idx": user,
                "user_id": f"u{user}",
                "ts": at,
                "model_version": "v1",
                "policy": "champion",
                "item_ids": shown,
                "scores": [1.0] * LENGTH,
                "propensities": [float(p) for p in props],
            }
        )
        clicks = rng.random(LENGTH) < BY_POSITION * np.where(explored, 1.0, model_boost)
        for j in np.flatnonzero(clicks):
            ts = at + 30.0 * (j + 1)
            idx = int(shown[j][1:]) + 1
            events.append((uuid.uuid4().hex, user, idx, "click", 1.0, ts, ts + 5.0, rid, None))
    with store.write() as conn:
        insert_events(conn, events)
        conn.execute(insert(schema.impressions), served)


def condition_3(tmp_path: Path, model_boost: float) -> dict[str, Any]:
    with dfw.open(f"sqlite:///{tmp_path / 'slots.db'}") as wheel:
        build(wheel.store, model_boost)
        doc = health(wheel.store)
    condition: dict[str, Any] = doc["conditions"][2]
    return condition


def test_position_alone_is_not_a_lift(tmp_path: Path) -> None:
    """Users click by position only: the model's slots win on raw click-through (they hold the
    top positions) but not at the positions exploration also filled."""
    condition = condition_3(tmp_path, model_boost=1.0)
    slots = condition["evidence"]["model_vs_exploration"]
    assert slots["impressions_older"] >= 200
    assert slots["diff_low"] / slots["ctr_older"] < 0.05  # no clear relative lift
    assert slots["diff_low"] < 0 < slots["diff_high"]
    assert not condition["next_action"].startswith("Users click the model's picks")
    assert [p["position"] for p in slots["positions"]] == list(range(4, LENGTH + 1))


def test_a_real_preference_is_still_seen(tmp_path: Path) -> None:
    """Users click the model's picks 1.6x as often as exploration's at the same position."""
    condition = condition_3(tmp_path, model_boost=1.6)
    slots = condition["evidence"]["model_vs_exploration"]
    assert condition["status"] == "pass"
    assert condition["next_action"].startswith("Users click the model's picks")
    assert slots["diff_low"] / slots["ctr_older"] >= 0.05
    # The model's click-through is taken at exploration's positions, so it estimates 1.6x
    # exploration's (position-only) click-through there.
    assert slots["ctr_newer"] / slots["ctr_older"] == pytest.approx(1.6, rel=0.25)
