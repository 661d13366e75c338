"""The bulk write path on SQLite and PostgreSQL: chunked inserts, duplicates, exact values."""

from __future__ import annotations

import dataflywheel as dfw
from dataflywheel.store.bulk import (
    COLUMNS,
    EventRow,
    insert_event_batches,
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
