"""A served user's input row equals that user's row of the training matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.learn.matrix import build_matrix
from dataflywheel.learn.snapshot import read_events
from dataflywheel.serve.history import Histories


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"recent_half_life": 1.5, "recent_floor": 0.05},
        {"half_life_days": 2.0, "recent_half_life": 3.0},
    ],
)
def test_row_matches_build_matrix(sqlite_url: str, params: dict[str, Any]) -> None:
    rng = np.random.default_rng(4)
    wheel = dfw.open(sqlite_url)
    try:
        wheel.track_many(
            [
                {
                    "user_id": f"u{rng.integers(3)}",
                    "item_id": f"i{rng.integers(12)}",
                    "type": str(rng.choice(["click", "purchase", "dislike"])),
                    "timestamp": 1_700_000_000 + 3600 * n,
                }
                for n in range(80)
            ]
        )
        events, watermark = read_events(wheel.store)
        histories = Histories(wheel.store, events, watermark)
        n_items = int(events.item_idx.max()) + 1
        for user in np.unique(events.user_idx):
            mine = events.user_idx == user
            expected = build_matrix(
                np.zeros(int(mine.sum()), dtype=np.int64),
                events.item_idx[mine],
                events.weight[mine],
                events.timestamp[mine],
                n_users=1,
                n_items=n_items,
                **params,
            )
            row, consumed = histories.row(int(user), n_items, params)
            np.testing.assert_allclose(row.toarray(), expected.toarray(), rtol=1e-6)
            assert set(consumed) == set(events.item_idx[mine & (events.weight != 0)])
    finally:
        wheel.close()


def test_live_tail_sees_every_commit_and_rows_follow_new_events(store_url: str) -> None:
    """Polls that find nothing new are cheap on SQLite (a version probe), yet the next commit
    by any connection, here a second process's store, is read; a user's cached row changes
    with the user's new events only."""
    wheel, other = dfw.open(store_url), dfw.open(store_url)
    try:
        wheel.track_many([{"user_id": "u", "item_id": f"i{n}", "type": "click"} for n in range(3)])
        wheel.track(user_id="v", item_id="i0", type="click")
        events, watermark = read_events(wheel.store)
        histories = Histories(wheel.store, events, watermark)
        user_u, user_v = int(events.user_idx[0]), int(events.user_idx[-1])
        n_items = 10
        before_u = histories.row(user_u, n_items, {})[0]
        before_v = histories.row(user_v, n_items, {})[0]
        for _ in range(3):
            histories.catch_up()
            assert histories.watermark == watermark
        other.track(user_id="u", item_id="i2", type="click")
        histories.catch_up()
        assert histories.watermark > watermark
        after_u = histories.row(user_u, n_items, {})[0]
        assert after_u.toarray()[0].sum() == before_u.toarray()[0].sum() + 1.0
        assert histories.row(user_v, n_items, {})[0] is before_v  # untouched: from the cache
        histories.close()
    finally:
        wheel.close()
        other.close()
