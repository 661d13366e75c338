"""Storing events on SQLite and PostgreSQL: partial batches, idempotent retries, dense ids."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.exc import DBAPIError

import dataflywheel as dfw
from dataflywheel.ingest.service import Batch, GroupCommitWriter


def test_valid_neighbours_of_bad_events_are_stored(wheel: dfw.Flywheel) -> None:
    result = wheel.track_many(
        [
            {"user_id": "u1", "item_id": "i1", "type": "click"},
            {"user_id": 5, "type": "click"},
            {"user_id": "u2", "item_id": "i1", "type": "like", "value": 1},
            {"user_id": "u3", "type": "nope"},
        ]
    )
    assert result.accepted == 2
    assert [(r["index"], r["field"]) for r in result.rejected] == [(1, "user_id"), (3, "type")]
    stats = wheel.stats()
    assert stats["events"] == 2
    assert stats["events_by_type"] == {"click": 1, "like": 1}
    assert stats["users"] == 2 and stats["items"] == 1


def test_retry_with_same_event_ids_stores_nothing_twice(wheel: dfw.Flywheel) -> None:
    batch = [
        {"event_id": f"e{i}", "user_id": f"u{i % 3}", "item_id": f"i{i}", "type": "click"}
        for i in range(50)
    ]
    first = wheel.track_many(batch)
    second = wheel.track_many(batch)
    assert (first.accepted, first.duplicates) == (50, 0)
    assert (second.accepted, second.duplicates) == (0, 50)
    inside = wheel.track_many([batch[0], {**batch[0], "event_id": "new"}, {**batch[0]}])
    assert (inside.accepted, inside.duplicates) == (1, 2)
    assert wheel.stats()["events"] == 51


def test_track_and_entities(wheel: dfw.Flywheel) -> None:
    assert wheel.track(user_id="u1", item_id="m1", type="watch", value=0.5).accepted == 1
    wheel.upsert_items([{"id": "m1", "categories": ["drama"], "attributes": {"year": 1999}}])
    wheel.upsert_items([{"id": "m1", "hidden": True}])
    item = wheel.store.get_entity("items", "m1")
    assert item is not None
    assert item["categories"] == ["drama"]
    assert item["attributes"] == {"year": 1999}
    assert item["hidden"] is True
    assert wheel.store.get_entity("items", "missing") is None


def test_dense_ids_are_stable_across_handles(store_url: str) -> None:
    with dfw.open(store_url) as first:
        first.track_many(
            [{"user_id": f"u{i}", "item_id": f"i{i}", "type": "click"} for i in range(5)]
        )
        ids = first.store.lookup_ids("users", ["u0", "u4"])
    with dfw.open(store_url) as second:
        assert second.store.lookup_ids("users", ["u0", "u4", "nobody"]) == ids
        second.track(user_id="u0", item_id="i9", type="click")
        assert second.stats()["users"] == 5


class _Deadlock(Exception):
    sqlstate = "40P01"


def test_writer_commits_a_deadlocked_group_again(
    wheel: dfw.Flywheel, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingestor = wheel.ingestor
    commit = ingestor.commit
    calls: list[int] = []

    def deadlock_once(batches: Sequence[Batch]) -> list[int]:
        calls.append(len(batches))
        if len(calls) == 1:
            raise DBAPIError("INSERT", {}, _Deadlock())
        return commit(batches)

    monkeypatch.setattr(ingestor, "commit", deadlock_once)
    writer = GroupCommitWriter(ingestor)
    try:
        event = ingestor.validator.validate({"user_id": "u", "type": "click"}, time.time())
        assert writer.submit(Batch([event], 0, time.time())).result(10) == 1
    finally:
        writer.close()
    assert len(calls) == 2 and wheel.stats()["events"] == 1


def test_concurrent_groups_store_each_event_once(wheel: dfw.Flywheel) -> None:
    """Overlapping batches (shared new users and items, retried ids in another order) from many
    threads: every batch is acknowledged and each event id is stored once."""
    ingestor = wheel.ingestor
    writer = GroupCommitWriter(ingestor)
    now = time.time()
    raw = [
        {"event_id": f"e{i}", "user_id": f"u{i % 13}", "item_id": f"i{i % 17}", "type": "click"}
        for i in range(400)
    ]
    batches = [raw[k : k + 40] for k in range(0, 400, 40)]
    batches += [list(reversed(batch)) for batch in batches]

    def send(batch: list[dict[str, object]]) -> int:
        events = [ingestor.validator.validate(e, now) for e in batch]
        return writer.submit(Batch(events, 0, now)).result(60)

    try:
        with ThreadPoolExecutor(8) as pool:
            accepted = list(pool.map(send, batches))
    finally:
        writer.close()
    assert sum(accepted) == 400
    stats = wheel.stats()
    assert (stats["events"], stats["users"], stats["items"]) == (400, 13, 17)
