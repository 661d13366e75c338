"""A store small enough to work every KPI out by hand (the expected values are in the tests).

Days are 2024-01-01 (a Monday, day B) to 2024-01-04; the session gap is the default 1 800 s.
- B:   u1 clicks i1 at 0 s, likes i1 at 100 s, clicks i2 at 4 000 s (two sessions: 100 s, 0 s);
       u2 views i1 at 500 s, received two days later (a late event).
- B+1: u1 clicks i1 at 0 s from list r1; u3 rates i2 at 10 s.   Served: r1 (v1: i1, i2),
       r2 (v1: i1, i3).
- B+2: nothing.
- B+3: u2 clicks i1 at 0 s.                                     Served: r3 (v2: i1).
"""

from __future__ import annotations

from sqlalchemy import insert

from dataflywheel.store import schema
from dataflywheel.store.bulk import insert_events
from dataflywheel.store.store import Store

B = 19_723  # 2024-01-01
DAY = 86_400.0
ITEMS = {"i1": 1, "i2": 2, "i3": 3}

EVENTS = [
    # (event_id, user, item, type, value, day offset, seconds, delay, recommendation)
    ("e1", 1, "i1", "click", 1.0, 0, 0, 1, None),
    ("e2", 1, "i1", "like", 1.0, 0, 100, 1, None),
    ("e3", 1, "i2", "click", 1.0, 0, 4_000, 1, None),
    ("e4", 2, "i1", "view", 1.0, 0, 500, 2 * DAY, None),
    ("e5", 1, "i1", "click", 1.0, 1, 0, 1, "r1"),
    ("e6", 3, "i2", "rating", 4.0, 1, 10, 1, None),
    ("e7", 2, "i1", "click", 1.0, 3, 0, 1, None),
]
SERVED = [
    ("r1", 1, 1, "v1", ["i1", "i2"]),
    ("r2", 3, 1, "v1", ["i1", "i3"]),
    ("r3", 2, 3, "v2", ["i1"]),
]


def fill(store: Store, events: list[tuple] | None = None, served: bool = True) -> None:
    """Write the hand-built events (or a subset) and impressions into ``store``."""
    store.upsert_entities("items", [{"id": i} for i in ITEMS], B * DAY)
    rows = [
        (eid, user, ITEMS[item], kind, value, ts, ts + delay, rid, None)
        for eid, user, item, kind, value, day, seconds, delay, rid in events or EVENTS
        for ts in [(B + day) * DAY + seconds]
    ]
    with store.write() as conn:
        insert_events(conn, rows)
        if served:
            conn.execute(
                insert(schema.impressions),
                [
                    {
                        "recommendation_id": rid,
                        "user_idx": user,
                        "user_id": f"u{user}",
                        "ts": (B + day) * DAY + 5,
                        "model_version": version,
                        "policy": "champion",
                        "item_ids": items,
                        "scores": [1.0] * len(items),
                        "propensities": [1.0] * len(items),
                    }
                    for rid, user, day, version, items in SERVED
                ],
            )
