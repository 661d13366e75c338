"""Generated data where the value of each slice is known: clicks follow two worlds of taste
(even users like items a*, odd users items b*), views land on random items (pure noise)."""

from __future__ import annotations

from typing import Any

import numpy as np

import dataflywheel as dfw

START = 1_700_000_000.0
DAY = 86_400.0


def worlds_with_noise(
    wheel: dfw.Flywheel,
    users: int = 120,
    items: int = 40,
    clicks: int = 12,
    views: int = 12,
    seed: int = 0,
) -> None:
    """Informative ``click`` events, random ``view`` events, and a ``segment`` attribute."""
    rng = np.random.default_rng(seed)
    wheel.upsert_users(
        [
            {"id": f"u{u}", "attributes": {"segment": f"s{u % 3}", "email": f"{u}@x"}}
            for u in range(users)
        ]
    )
    events: list[dict[str, Any]] = []
    for u in range(users):
        world = "a" if u % 2 == 0 else "b"
        picks = iter(rng.choice(items // 2, size=clicks, replace=False))
        times = np.sort(rng.uniform(0, 30 * DAY, clicks + views))
        kinds = rng.permutation(["click"] * clicks + ["view"] * views)
        for stamp, kind in zip(times, kinds, strict=True):
            if kind == "click":
                item = f"{world}{next(picks)}"
            else:
                item = f"{'ab'[rng.integers(2)]}{rng.integers(items // 2)}"
            events.append(
                {
                    "user_id": f"u{u}",
                    "item_id": item,
                    "type": str(kind),
                    "timestamp": START + float(stamp),
                }
            )
    assert wheel.track_many(events).accepted == len(events)
