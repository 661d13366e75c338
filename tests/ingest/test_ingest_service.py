"""Storing events on SQLite and PostgreSQL: partial batches, idempotent retries, dense ids."""

from __future__ import annotations

import dataflywheel as dfw


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
