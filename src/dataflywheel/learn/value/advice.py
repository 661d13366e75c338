"""Coverage (items and users the data says little about) and the advice drawn from the measures.

Each advice item is ``{"kind", "message", "evidence"}``; where routing cases to the label queue
would help, it also carries ``"trigger"``: the body of a ``POST /v1/triggers`` that would do it
(offered, never created here).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.learn.value.data import ValueData
from dataflywheel.learn.value.slices import CARRIES, HARMFUL, NOTHING
from dataflywheel.store import schema

MIN_STRONG = 3
"""An item with fewer strong-signal events than this is under-covered."""
MIN_USER_EVENTS = 5
"""A user with fewer item events than this cannot even be evaluated (no holdout)."""
SAMPLE = 20


def coverage(data: ValueData) -> dict[str, Any]:
    """Under-covered items (few strong signals) and users (few events), with samples."""
    ev = data.events
    signals = data.store.settings.signals
    strong_codes = [i for i, t in enumerate(data.type_names) if t in signals and signals[t].strong]
    strong = np.isin(data.type_code, strong_codes)
    strong_per_item = np.bincount(ev.item_idx[strong], minlength=data.n_items)
    events_per_item = np.bincount(ev.item_idx, minlength=data.n_items)
    i, u = schema.items.c, schema.users.c
    with data.store.read() as conn:
        items = conn.execute(select(i.idx, i.item_id).where(i.hidden.is_(False))).all()
        user_rows = conn.execute(select(u.idx, u.user_id)).all()
    item_idx = np.asarray([r[0] for r in items], dtype=np.int64)
    item_ids = np.asarray([r[1] for r in items], dtype=object)
    thin_items = strong_per_item[item_idx] < MIN_STRONG
    # Items with the fewest signals of any kind first: they are the least explored.
    order = np.lexsort((events_per_item[item_idx], strong_per_item[item_idx]))
    sample_items = [str(item_ids[j]) for j in order if thin_items[j]][:SAMPLE]

    events_per_user = np.bincount(ev.user_idx, minlength=data.n_users)
    last_seen = np.full(data.n_users, -np.inf)
    np.maximum.at(last_seen, ev.user_idx, ev.timestamp)
    user_idx = np.asarray([r[0] for r in user_rows], dtype=np.int64)
    user_ids = np.asarray([r[1] for r in user_rows], dtype=object)
    counts = events_per_user[user_idx]
    thin_users = (counts > 0) & (counts < MIN_USER_EVENTS)
    # The most recently active first: they are the ones who can still be asked.
    recent = np.argsort(-last_seen[user_idx], kind="stable")
    sample_users = [str(user_ids[j]) for j in recent if thin_users[j]][:SAMPLE]
    return {
        "items": {
            "catalogue": len(items),
            "under_covered": int(thin_items.sum()),
            "min_strong_signals": MIN_STRONG,
            "sample": sample_items,
        },
        "users": {
            "with_events": int((counts > 0).sum()),
            "under_covered": int(thin_users.sum()),
            "min_events": MIN_USER_EVENTS,
            "sample": sample_users,
        },
    }


def _trigger(name: str, field: str, ids: list[str]) -> dict[str, Any]:
    return {
        "name": name,
        "task": "relevance",
        "priority": 1,
        "when": {"field": field, "op": "in", "value": ids},
    }


def advise(
    doubling: dict[str, Any],
    shape: dict[str, Any],
    slices: list[dict[str, Any]],
    cover: dict[str, Any],
) -> list[dict[str, Any]]:
    """Concrete recommendations, each with the evidence it rests on."""
    advice: list[dict[str, Any]] = []
    gain, low, high = doubling.get("gain"), doubling.get("low"), doubling.get("high")
    if gain is not None and low is not None and high is not None:
        evidence = {"next_doubling": doubling, "threshold": shape["threshold"]}
        if shape["flat"]:
            advice.append(
                {
                    "kind": "diminishing-returns",
                    "message": f"More of the same data is worth at most {high:+.4f} NDCG@10 per "
                    f"doubling (below {shape['threshold']:.4f}): invest in new or stronger "
                    "signals and labels rather than volume.",
                    "evidence": evidence,
                }
            )
        elif low > 0:
            advice.append(
                {
                    "kind": "collect-more",
                    "message": f"Twice the data is worth about {gain:+.4f} NDCG@10 "
                    f"({low:+.4f} to {high:+.4f}): keep growing usage and collection.",
                    "evidence": evidence,
                }
            )
    for entry in slices:
        name, kind = entry["name"], entry["kind"]
        span = f"delta {entry['delta']:+.4f} ({entry['low']:+.4f} to {entry['high']:+.4f})"
        if kind in ("event_type", "labels") and entry["verdict"] == HARMFUL:
            message = (
                f"Removing `{name}` from training improves NDCG@10 ({span}): give it weight 0 "
                f"(signals.{name}.weight) or stop collecting it."
            )
            advice.append({"kind": "drop-signal", "message": message, "evidence": entry})
        elif kind in ("event_type", "labels") and entry["verdict"] == NOTHING:
            message = (
                f"Stop collecting `{name}` for training: no detectable value ({span}), "
                "unless it serves another purpose."
            )
            advice.append({"kind": "no-value-signal", "message": message, "evidence": entry})
        elif kind == "segment" and entry["verdict"] in (CARRIES, HARMFUL):
            effect = "helps" if entry["verdict"] == CARRIES else "hurts"
            message = f"The data of users with {name} {effect} everyone else's lists ({span})."
            advice.append({"kind": "segment", "message": message, "evidence": entry})
    items, users = cover["items"], cover["users"]
    if items["under_covered"]:
        advice.append(
            {
                "kind": "explore-items",
                "message": f"Raise exploration on {items['under_covered']} items with fewer than "
                f"{items['min_strong_signals']} strong signals each, or route them to the "
                "label queue with the trigger offered (sample in evidence).",
                "evidence": items,
                "trigger": _trigger("value-under-covered-items", "item_id", items["sample"]),
            }
        )
    if users["under_covered"]:
        advice.append(
            {
                "kind": "explicit-feedback",
                "message": f"Ask {users['under_covered']} users with fewer than "
                f"{users['min_events']} events for explicit feedback (sample in evidence).",
                "evidence": users,
                "trigger": _trigger("value-thin-users", "user_id", users["sample"]),
            }
        )
    return advice
