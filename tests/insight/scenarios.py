"""Hand-built stores that mimic each flywheel situation, written row by row into the tables.

A day's active users see lists served by the version in use and click with a probability set by
that version's quality; some scenarios add explicit likes, retrain on fresh snapshots, or let
tomorrow's active users follow today's click-through.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, insert, select

from dataflywheel.store import schema
from dataflywheel.store.bulk import insert_events
from dataflywheel.store.store import Store

DAY = 86_400.0
BASE_DAY = 19_700  # 2023-12-08
RETRAIN_EVERY = 4


@dataclass(frozen=True)
class Scenario:
    strong: bool = True  # explicit likes besides impressions and clicks
    learns: bool = True  # retrain on each new snapshot (else one early model only)
    perceivable: bool = True  # CTR follows the serving version's quality
    elastic: bool = True  # tomorrow's active users follow today's CTR


SCENARIOS = {
    "flywheel": Scenario(),
    "weak-signal": Scenario(strong=False),
    "no-learning": Scenario(learns=False, perceivable=False, elastic=False),
    "imperceptible": Scenario(perceivable=False, elastic=False),
    "inelastic": Scenario(elastic=False),
}


def build(store: Store, name: str, days: int = 40, users: int = 400, seed: int = 7) -> None:
    """Fill ``store`` with ``days`` days of the named scenario."""
    scenario = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    item_ids = [f"i{n}" for n in range(50)]
    store.upsert_entities("items", [{"id": i} for i in item_ids], BASE_DAY * DAY)
    versions: list[tuple[str, float]] = []  # (version, quality)
    ctr_yesterday = 0.1
    for day in range(days):
        start = (BASE_DAY + day) * DAY
        retrain = day >= 1 and (day - 1) % RETRAIN_EVERY == 0
        if retrain and (scenario.learns or not versions):
            versions.append(_register(store, len(versions) + 1, start))
        version, quality = versions[-1] if versions else (None, 0.0)
        ctr = 0.05 + 0.25 * quality if scenario.perceivable else 0.1
        share = 0.25 + (2.0 * ctr_yesterday if scenario.elastic else 0.2)
        active = rng.choice(users, size=int(users * min(share, 0.9)), replace=False)
        rows, served = [], []
        for user in active:
            at = start + float(rng.uniform(0, 20 * 3600))
            for _ in range(2):
                rid = uuid.uuid4().hex
                shown = list(rng.choice(item_ids, size=5, replace=False, p=_popularity(50)))
                served.append(
                    {
                        "recommendation_id": rid,
                        "user_idx": int(user),
                        "user_id": f"u{user}",
                        "ts": at,
                        "model_version": version,
                        "policy": "champion",
                        "item_ids": shown,
                        "scores": [1.0] * 5,
                        "propensities": [1.0] * 5,
                    }
                )
                rows.append(_event(user, None, "impression", at, rid))
                at += 30
                if rng.random() < ctr:
                    rows.append(_event(user, shown[0], "click", at, rid))
                    at += 30
                    if scenario.strong and rng.random() < 0.4:
                        rows.append(_event(user, shown[0], "like", at, rid))
                        at += 30
        with store.write() as conn:
            insert_events(conn, rows)
            conn.execute(insert(schema.impressions), served)
        ctr_yesterday = ctr


def _popularity(n: int) -> np.ndarray:
    weights = 1.0 / np.arange(1, n + 1)
    return weights / weights.sum()


def _event(
    user: int, item: str | None, kind: str, ts: float, rid: str
) -> tuple[str, int, int | None, str, float, float, float, str | None, str | None]:
    item_idx = int(item[1:]) + 1 if item else None
    return (uuid.uuid4().hex, int(user), item_idx, kind, 1.0, ts, ts + 5.0, rid, None)


def _register(store: Store, n: int, at: float) -> tuple[str, float]:
    """A model version trained on everything stored so far, promoted at once."""
    version, quality = f"v{n}", 0.1 * n
    with store.write() as conn:
        watermark = conn.execute(select(func.coalesce(func.max(schema.events.c.id), 0)))
        mark = int(watermark.scalar_one())
        conn.execute(
            insert(schema.snapshots).values(
                id=f"s{n}",
                created_at=at,
                watermark=mark,
                n_events=mark,
                n_users=1,
                n_items=1,
                n_interactions=1,
                params={},
            )
        )
        conn.execute(
            schema.models.update()
            .where(schema.models.c.status == "champion")
            .values(status="retired")
        )
        conn.execute(
            insert(schema.models).values(
                version=version,
                created_at=at + 60,
                name="itemknn",
                params={},
                metrics={"ndcg@10": 0.1 + 0.01 * n},
                snapshot_id=f"s{n}",
                status="champion",
                artifact="",
                fit_seconds=1.0,
                promoted_at=at + 120,
            )
        )
        conn.execute(
            insert(schema.model_transitions).values(
                version=version,
                from_status="candidate",
                to_status="champion",
                reason="gate",
                ts=at + 120,
            )
        )
    return version, quality
