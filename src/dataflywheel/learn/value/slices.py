"""Value by slice: retrain without one slice of the training data and compare, user by user.

Sign convention: ``delta`` = NDCG@10 with the slice − NDCG@10 without it, so a positive delta
means the slice carries value (removing it loses quality) and a negative one that it harms.
The verdict reads the bootstrap interval of the mean paired delta: above 0 → "carries value",
below 0 → "harmful", containing 0 → "no detectable value".

Slices: each event type (``label`` events, the answers of the label queue, are their own kind
``labels``), every strong signal type together (kind ``strength``), and each segment of users
by a declared attribute with few distinct values. A segment is judged on the users outside it
(its own users would simply lose their history), which measures what its data teaches the
model about everyone else.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
from sqlalchemy import select

from dataflywheel.learn.value.data import ValueData, interval, resample_weights
from dataflywheel.store import schema

MIN_SLICE_USERS = 10
"""Fewer evaluable users than this and a slice is not judged."""
MAX_SEGMENT_VALUES = 8
LABEL_TYPE = "label"

CARRIES, NOTHING, HARMFUL = "carries value", "no detectable value", "harmful"


def verdict(low: float, high: float) -> str:
    if low > 0:
        return CARRIES
    if high < 0:
        return HARMFUL
    return NOTHING


def judge(
    kind: str, name: str, delta: np.ndarray, replicates: int, rng: np.random.Generator
) -> dict[str, Any]:
    """A slice entry from the per-user paired deltas (with − without)."""
    low, high = interval(resample_weights(len(delta), replicates, rng) @ delta)
    return {
        "kind": kind,
        "name": name,
        "delta": float(delta.mean()),
        "low": low,
        "high": high,
        "verdict": verdict(low, high),
        "users": len(delta),
    }


def candidate_slices(data: ValueData) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(kind, name, events kept without the slice, users judged) for every slice, largest
    event types first, then the strong signals together, then segments."""
    found = []
    train_codes = data.type_code[data.train]
    counts = np.bincount(train_codes, minlength=len(data.type_names))
    for code in np.argsort(-counts, kind="stable"):
        if counts[code] == 0:
            continue
        name = data.type_names[code]
        keep = data.train & (data.type_code != code)
        users = data.eval_users[data.train_users(keep)[data.eval_users]]
        kind = "labels" if name == LABEL_TYPE else "event_type"
        found.append((kind, name, keep, users))
    signals = data.store.settings.signals
    strong = [c for c, t in enumerate(data.type_names) if t in signals and signals[t].strong]
    if len([c for c in strong if counts[c]]) >= 2:
        keep = data.train & ~np.isin(data.type_code, strong)
        users = data.eval_users[data.train_users(keep)[data.eval_users]]
        found.append(("strength", "strong signals", keep, users))
    for name, members in segments(data).items():
        keep = data.train & ~members[data.events.user_idx]
        users = data.eval_users[~members[data.eval_users]]
        found.append(("segment", name, keep, users))
    return found


def segments(data: ValueData) -> dict[str, np.ndarray]:
    """``attribute=value`` → boolean mask over users, for declared attributes with 2 to 8
    distinct scalar values."""
    u = schema.users.c
    with data.store.read() as conn:
        rows = conn.execute(select(u.idx, u.attributes).where(u.attributes.is_not(None))).all()
    values: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
    for idx, attributes in rows:
        if not isinstance(attributes, dict):
            continue
        for key, value in attributes.items():
            if isinstance(value, str | int | bool) and not isinstance(value, float):
                values[str(key)][str(value)].append(int(idx))
    found: dict[str, np.ndarray] = {}
    for key in sorted(values):
        groups = values[key]
        if not 2 <= len(groups) <= MAX_SEGMENT_VALUES:
            continue
        for value in sorted(groups):
            mask = np.zeros(data.n_users, dtype=bool)
            mask[[i for i in groups[value] if i < data.n_users]] = True
            found[f"{key}={value}"] = mask
    return found


def value_by_slice(
    data: ValueData, full: np.ndarray, deadline: float, seed: int, replicates: int
) -> tuple[list[dict[str, Any]], list[str], bool]:
    """Judge every slice until ``deadline``; returns the entries, the slices skipped (with
    why) and whether the budget sufficed. ``full`` is the per-user NDCG of the full data over
    ``data.eval_users``."""
    rng = np.random.default_rng([seed, 11])
    position = np.full(data.n_users, -1)
    position[data.eval_users] = np.arange(len(data.eval_users))
    entries: list[dict[str, Any]] = []
    skipped: list[str] = []
    complete = True
    for kind, name, keep, users in candidate_slices(data):
        if len(users) < MIN_SLICE_USERS:
            skipped.append(f"{kind} {name}: {len(users)} evaluable users without it")
            continue
        if time.monotonic() > deadline:
            skipped.append(f"{kind} {name}: over budget")
            complete = False
            continue
        without = data.ndcg(keep, users)
        entry = judge(kind, name, full[position[users]] - without, replicates, rng)
        entry["events"] = int((data.train & ~keep).sum())
        entries.append(entry)
    return entries, skipped, complete
