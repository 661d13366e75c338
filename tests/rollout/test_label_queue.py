"""The label queue: priority order, one entry per case, daily quotas per trigger, and labels that
come back as strong ``label`` events in the next snapshot (validated whole, retried safely)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.errors import FlywheelError, NotFoundError, ValidationError
from dataflywheel.label.queue import DAY
from dataflywheel.learn.snapshot import take_snapshot

T0 = 1.7e9


@pytest.fixture
def flywheel(store_url: str) -> Iterator[dfw.Flywheel]:
    with dfw.open(store_url) as handle:
        yield handle


def _events(kind: str, pairs: list[tuple[str, str]], at: float = T0) -> list[dict[str, Any]]:
    return [
        {"user_id": user, "item_id": item, "type": kind, "timestamp": at + n}
        for n, (user, item) in enumerate(pairs)
    ]


def _is(kind: str) -> dict[str, Any]:
    return {"field": "type", "op": "eq", "value": kind}


def test_pending_is_highest_priority_then_oldest(flywheel: dfw.Flywheel) -> None:
    queue = flywheel.loop.rollout.queue
    queue.add_trigger({"name": "skips", "task": "relevance", "when": _is("skip"), "priority": 1})
    queue.add_trigger({"name": "dislikes", "task": "safety", "when": _is("dislike"), "priority": 9})
    flywheel.track_many(_events("skip", [("u1", "i1"), ("u2", "i2")]))
    assert queue.scan(now=T0 + 100) == {"skips": 2}
    flywheel.track_many(_events("skip", [("u0", "i0")]) + _events("dislike", [("u3", "i3")]))
    assert queue.scan(now=T0 + 200) == {"skips": 1, "dislikes": 1}

    order = [(c["priority"], c["user_id"], c["created_at"]) for c in queue.pending()]
    assert order == [
        (9, "u3", T0 + 200),
        (1, "u1", T0 + 100),
        (1, "u2", T0 + 100),
        (1, "u0", T0 + 200),
    ]
    assert [c["user_id"] for c in queue.pending(limit=2)] == ["u3", "u1"]
    assert [c["user_id"] for c in queue.pending(task="relevance")] == ["u1", "u2", "u0"]
    case = queue.pending(limit=1)[0]
    assert case["reason"] == "trigger dislikes" and case["status"] == "pending"


def test_a_case_enters_the_queue_once(flywheel: dfw.Flywheel) -> None:
    queue = flywheel.loop.rollout.queue
    queue.add_trigger({"name": "dislikes", "task": "relevance", "when": _is("dislike")})
    low = {"field": "value", "op": "lt", "value": 2}
    queue.add_trigger({"name": "low ratings", "task": "relevance", "when": low})
    queue.add_trigger({"name": "review", "task": "review", "when": _is("dislike")})
    twice = _events("dislike", [("u1", "i1"), ("u1", "i1"), ("u2", "i1")])
    flywheel.track_many(twice)
    first = queue.scan(now=T0)
    assert first == {"dislikes": 2, "low ratings": 0, "review": 2}
    flywheel.track_many(_events("dislike", [("u1", "i1")], at=T0 + 50))
    assert queue.scan(now=T0 + 60) == {"dislikes": 0, "low ratings": 0, "review": 0}
    cases = {(c["task"], c["user_id"], c["item_id"]) for c in queue.pending()}
    assert cases == {
        ("relevance", "u1", "i1"),
        ("relevance", "u2", "i1"),
        ("review", "u1", "i1"),
        ("review", "u2", "i1"),
    }
    assert len(queue.pending()) == 4
    assert queue.scan(now=T0 + 70) == {}  # nothing new since the watermark


def test_quota_caps_each_trigger_per_day(flywheel: dfw.Flywheel) -> None:
    queue = flywheel.loop.rollout.queue
    trigger = {"name": "dislikes", "task": "relevance", "when": _is("dislike"), "quota_per_day": 2}
    queue.add_trigger(trigger)
    queue.add_trigger({"name": "unlimited", "task": "audit", "when": _is("dislike")})
    flywheel.track_many(_events("dislike", [(f"u{n}", "i1") for n in range(5)]))
    assert queue.scan(now=T0) == {"dislikes": 2, "unlimited": 5}
    flywheel.track_many(_events("dislike", [(f"u{n}", "i2") for n in range(3)], at=T0 + 10))
    assert queue.scan(now=T0 + 3_600)["dislikes"] == 0  # the same day: no room left
    flywheel.track_many(_events("dislike", [(f"u{n}", "i3") for n in range(3)], at=T0 + 20))
    assert queue.scan(now=T0 + DAY + 1)["dislikes"] == 2  # a day later the quota is free again
    assert len(queue.pending(task="relevance")) == 4
    assert len(queue.pending(task="audit")) == 11


def test_labels_become_strong_events_in_the_next_snapshot(flywheel: dfw.Flywheel) -> None:
    queue, labels = flywheel.loop.rollout.queue, flywheel.loop.rollout.labels
    queue.add_trigger({"name": "dislikes", "task": "relevance", "when": _is("dislike")})
    flywheel.track_many(_events("dislike", [("u1", "i1"), ("u2", "i2")]))
    queue.scan(now=T0)
    first, second = queue.pending()
    batch = [
        {"id": first["id"], "value": 0.5},
        {"id": second["id"], "value": -1, "correction": "i9"},
        {"task": "relevance", "user_id": "u3", "item_id": "i3", "value": 1},  # not queued
    ]
    result = labels.submit(batch, now=T0 + 10)
    assert result == {
        "labelled": 3,
        "events": {"accepted": 4, "duplicates": 0, "rejected": []},
    }
    assert queue.pending() == []
    assert flywheel.stats()["events_by_type"]["label"] == 4

    snapshot = take_snapshot(flywheel.store, record=False)
    users = flywheel.store.lookup_ids("users", ["u1", "u2", "u3"])
    items = flywheel.store.lookup_ids("items", ["i1", "i2", "i3", "i9"])
    ev = snapshot.events

    def weights(user: str, item: str) -> list[float]:
        mask = (ev.user_idx == users[user]) & (ev.item_idx == items[item])
        return sorted(ev.weight[mask].tolist())

    dislike = flywheel.settings.signals["dislike"].weight
    assert weights("u1", "i1") == sorted([dislike, 4 * 0.5])
    assert weights("u2", "i2") == sorted([dislike, -4.0])
    assert weights("u2", "i9") == [4.0]  # the correction is a positive label
    assert weights("u3", "i3") == [4.0]

    again = labels.submit(batch, now=T0 + 20)  # a retry stores nothing twice
    assert again["events"] == {"accepted": 0, "duplicates": 4, "rejected": []}
    assert flywheel.stats()["events_by_type"]["label"] == 4
    assert queue.scan(now=T0 + 30) == {}  # label events never trigger more labelling


CASE = {"task": "relevance", "user_id": "u1", "item_id": "i1", "value": 1}


@pytest.mark.parametrize(
    ("bad", "error", "field"),
    [
        ({**CASE, "task": "nope"}, NotFoundError, "task"),
        ({"id": 999_999, "value": 1}, NotFoundError, "id"),
        ({**CASE, "user_id": None}, ValidationError, "user_id"),
        ({**CASE, "value": 2}, ValidationError, "value"),
        ({**CASE, "value": True}, ValidationError, "value"),
        ({**CASE, "correction": 5}, ValidationError, "correction"),
        ({**CASE, "why": "x"}, ValidationError, ""),
    ],
)
def test_a_bad_label_rejects_the_whole_batch(
    flywheel: dfw.Flywheel, bad: dict[str, Any], error: type[FlywheelError], field: str
) -> None:
    queue, labels = flywheel.loop.rollout.queue, flywheel.loop.rollout.labels
    queue.add_trigger({"name": "dislikes", "task": "relevance", "when": _is("dislike")})
    flywheel.track_many(_events("dislike", [("u1", "i1")]))
    queue.scan(now=T0)
    good = {"id": queue.pending()[0]["id"], "value": 1, "suite": "hard"}
    with pytest.raises(error) as caught:
        labels.submit([good, bad], now=T0 + 10)
    where = "labels.1" + (f".{field}" if field else "")
    assert caught.value.details["field"] == where
    assert "label" not in flywheel.stats()["events_by_type"]
    assert len(queue.pending()) == 1
    assert labels.suites() == {}
    assert labels.curated() == []


def test_tasks_are_the_builtin_one_and_the_triggers(flywheel: dfw.Flywheel) -> None:
    queue, labels = flywheel.loop.rollout.queue, flywheel.loop.rollout.labels
    assert queue.tasks() == {"relevance"}
    with pytest.raises(NotFoundError):
        labels.submit([{"task": "toxicity", "user_id": "u1", "item_id": "i1", "value": -1}])
    queue.add_trigger({"name": "reports", "task": "toxicity", "when": _is("report")})
    assert queue.tasks() == {"relevance", "toxicity"}
    labels.submit([{"task": "toxicity", "user_id": "u1", "item_id": "i1", "value": -1}])
    assert [row["task"] for row in labels.curated()] == ["toxicity"]
    with pytest.raises(ValidationError) as empty:
        labels.submit([])
    assert empty.value.field == "labels"
    only_the_label = take_snapshot(flywheel.store, record=False).events.weight
    assert np.allclose(only_the_label, [-4.0])
