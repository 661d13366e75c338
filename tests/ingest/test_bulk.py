"""The bulk write path on SQLite and PostgreSQL: chunked inserts, duplicates, exact values,
column-wise inserts and key creation."""

from __future__ import annotations

import dataflywheel as dfw
from dataflywheel.store.bulk import (
    COLUMNS,
    EventColumns,
    EventRow,
    GeneratedIds,
    create_keys,
    insert_event_batches,
    insert_event_columns,
    insert_events,
    insert_keys,
    select_keys,
)


def test_insert_events_counts_new_rows_across_chunks(wheel: dfw.Flywheel) -> None:
    rows: list[EventRow] = [
        (f"e{i}", i % 7, None if i % 3 else i, "click", 0.1 * i, 1.7e9 + i / 3, 1.7e9, None, None)
        for i in range(1_203)
    ]
    # A duplicate inside the same chunk, one in a later chunk, and odd text that must survive.
    rows += [rows[5], rows[600]]
    rows.append(("q'\"\\\t\n☃", 1, 2, "rating", -2.5, 1.7e9, 1.7e9, "rec-1", '{"a": [1, "x"]}'))
    with wheel.store.write() as conn:
        assert insert_events(conn, rows) == 1_204
    with wheel.store.write() as conn:
        assert insert_events(conn, rows[:700]) == 0
    with wheel.store.read() as conn:
        stored = {
            row[0]: tuple(row)
            for row in conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM events").all()
        }
    assert len(stored) == 1_204
    for row in (rows[0], rows[1], rows[599], rows[1_202], rows[-1]):
        assert stored[row[0]] == row


def test_keys_are_created_once_and_found(wheel: dfw.Flywheel) -> None:
    keys = [f"user-{i}" for i in range(2_500)]
    with wheel.store.write() as conn:
        insert_keys(conn, "users", "user_id", keys[:1_000], 1.0)
        insert_keys(conn, "users", "user_id", keys, 2.0)
        found = select_keys(conn, "users", "user_id", [*keys, "nobody"])
    assert sorted(found) == sorted(keys)
    assert len(set(found.values())) == len(keys)
    with wheel.store.read() as conn:
        created: dict[str, float] = dict(
            conn.exec_driver_sql("SELECT user_id, created_at FROM users").all()
        )
    assert created["user-0"] == 1.0 and created["user-2499"] == 2.0


def test_a_group_of_batches_counts_each_batch(wheel: dfw.Flywheel) -> None:
    def row(event_id: str) -> EventRow:
        return (event_id, 1, None, "click", 1.0, 1.7e9, 1.7e9, None, None)

    with wheel.store.write() as conn:
        insert_events(conn, [row("old")])
    batches = [
        [row("a"), row("b"), row("a")],  # a repeat inside the batch
        [],
        [row("old"), row("c")],  # already stored
        [row("b"), row("d")],  # a repeat of the first batch
    ]
    with wheel.store.write() as conn:
        assert insert_event_batches(conn, batches) == [2, 0, 1, 1]
    assert wheel.stats()["events"] == 5


def test_insert_event_columns_stores_what_the_rows_say(wheel: dfw.Flywheel) -> None:
    n = 3_000  # several multi-row statements on SQLite
    columns = EventColumns(
        event_id=GeneratedIds("f00d-", [i * 3 for i in range(n)]),
        user_idx=[i % 11 for i in range(n)],
        item_idx=[None if i % 4 == 0 else i % 13 for i in range(n)],
        type="rating",
        value=[i / 8 for i in range(n)],
        ts=[1.7e9 + i for i in range(n)],
        received_at=1.8e9,
        recommendation_id=[None if i % 2 else f"r{i}" for i in range(n)],
    )
    with wheel.store.write() as conn:
        assert insert_event_columns(conn, columns) == n
    # The same ids again, one of them twice inside the batch: nothing new.
    again = EventColumns(
        event_id=[f"f00d-{0:012d}", f"f00d-{0:012d}", f"f00d-{3:012d}"],
        user_idx=[1, 1, 1],
        item_idx=None,
        type=["click", "click", "like"],
        value=[1.0, 1.0, 1.0],
        ts=[1.7e9, 1.7e9, 1.7e9],
        received_at=[1.9e9, 1.9e9, 1.9e9],
    )
    with wheel.store.write() as conn:
        assert insert_event_columns(conn, again) == 0
        assert insert_event_columns(conn, EventColumns([], [], None, "x", [], [], 1.0)) == 0
    with wheel.store.read() as conn:
        stored = [
            tuple(row)
            for row in conn.exec_driver_sql(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY id")
        ]
    assert stored == columns.rows()
    assert stored[1][0] == "f00d-000000000003" and stored[0][2] is None


def test_generated_ids_are_formatted_alike_by_python_and_the_database(
    wheel: dfw.Flywheel,
) -> None:
    rows = [0, 7, 123_456, 999_999_999_999, 10**12 + 5]
    ids = GeneratedIds("abc123-", rows)
    n = len(rows)
    with wheel.store.write() as conn:
        insert_event_columns(
            conn, EventColumns(ids, [1] * n, None, "click", [1.0] * n, [1.7e9] * n, 1.7e9)
        )
    with wheel.store.read() as conn:
        stored = [r for (r,) in conn.exec_driver_sql("SELECT event_id FROM events ORDER BY id")]
    assert stored == ids.materialize() == [f"abc123-{row:012d}" for row in rows]


def test_create_keys_creates_each_key_once(wheel: dfw.Flywheel) -> None:
    with wheel.store.write() as conn:
        first = create_keys(conn, "items", "item_id", [f"i{k}" for k in range(1_500)], 1.0)
        assert create_keys(conn, "items", "item_id", [], 1.0) == {}
    with wheel.store.write() as conn:
        second = create_keys(conn, "items", "item_id", ["i5", "new", "i1499"], 2.0)
        looked_up = select_keys(conn, "items", "item_id", ["i5", "new", "i1499"])
    assert len(first) == 1_500 and len(set(first.values())) == 1_500
    assert second == looked_up
    assert second["i5"] == first["i5"] and second["i1499"] == first["i1499"]
    assert second["new"] not in first.values()
    with wheel.store.read() as conn:
        (count,) = conn.exec_driver_sql("SELECT count(*) FROM items").one()
    assert count == 1_501
