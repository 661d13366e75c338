"""The serving tail reads every committed event once, in any commit order, and costs no query
while nothing changed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from sqlalchemy import event, text

import dataflywheel as dfw
from dataflywheel.ingest.service import Batch
from dataflywheel.ingest.validate import Event
from dataflywheel.serve import tail as tail_module
from dataflywheel.serve.tail import EventTail, IdSet
from dataflywheel.store.bulk import insert_events


@pytest.fixture
def wheels(postgres_url: str) -> Iterator[Callable[[], dfw.Flywheel]]:
    """Stores on one database that count as different processes: the URLs differ, so a
    write by one reaches the others only by the server's notification."""
    opened: list[dfw.Flywheel] = []

    def open_wheel() -> dfw.Flywheel:
        opened.append(dfw.open(f"{postgres_url}?application_name=w{len(opened)}"))
        return opened[-1]

    yield open_wheel
    for wheel in opened:
        wheel.close()


def _wait_for(tail: EventTail, count: int, seconds: float) -> list[int]:
    """Items read by ``tail`` until ``count`` arrived or ``seconds`` passed."""
    items: list[int] = []
    deadline = time.monotonic() + seconds
    while len(items) < count and time.monotonic() < deadline:
        found, _ = tail.read()
        items += found.item_idx.tolist()
        time.sleep(0.01)
    return items


def _listening(tail: EventTail) -> None:
    assert tail._hub is not None
    assert tail._hub.listening.wait(10)
    tail.read()  # the first read catches up; later ones rely on notifications


@pytest.mark.postgres
def test_lower_id_committed_last_is_read_by_notification(
    wheels: Callable[[], dfw.Flywheel],
) -> None:
    """Writer A inserts (lower id) and holds its transaction; writer B inserts a higher id and
    commits; then A commits. The tail, which has read B's event, still reads A's, well before
    a safety catch-up could have found it."""
    serving, writer_a, writer_b = wheels(), wheels(), wheels()
    writer_a.track(user_id="u", item_id="i0", type="click")  # ids exist for both items
    writer_a.track(user_id="u", item_id="i1", type="click")
    tail = EventTail(serving.store, serving.store.latest_event_id())
    _listening(tail)
    items = writer_a.store.lookup_ids("items", ["i0", "i1"])
    users = writer_a.store.lookup_ids("users", ["u"])
    now = time.time()
    row = ("late", users["u"], items["i0"], "click", 1.0, now, now, None, None)
    with writer_a.store.write() as conn:
        insert_events(conn, [row])
        low = conn.execute(text("SELECT id FROM events WHERE event_id = 'late'")).scalar_one()
        writer_b.track(user_id="u", item_id="i1", type="click", event_id="early")
        assert writer_b.store.latest_event_id() > low
        assert _wait_for(tail, 1, 2.0) == [items["i1"]]
    assert tail.top > low
    assert _wait_for(tail, 1, 1.0) == [items["i0"]]
    assert tail_module.CATCHUP_SECONDS > 1.0
    assert _wait_for(tail, 1, 0.3) == []  # each event once
    tail.close()


@pytest.mark.postgres
def test_no_query_while_nothing_changed(
    wheels: Callable[[], dfw.Flywheel],
) -> None:
    serving, writer = wheels(), wheels()
    writer.track(user_id="u", item_id="i0", type="click")
    tail = EventTail(serving.store, 0)
    _listening(tail)
    checkouts: list[int] = []
    event.listen(serving.store.engine, "checkout", lambda *_: checkouts.append(1))
    started = time.perf_counter()
    for _ in range(1000):
        found, _ = tail.read()
        assert not len(found)
    elapsed = time.perf_counter() - started
    assert checkouts == []
    assert elapsed < 0.5  # microseconds per read (a query costs about half a millisecond)
    writer.track(user_id="u", item_id="i1", type="click")
    assert len(_wait_for(tail, 1, 2.0)) == 1
    assert checkouts  # the notified range was read
    tail.close()


@pytest.mark.postgres
def test_writer_without_notification_is_read_by_the_catch_up(
    wheels: Callable[[], dfw.Flywheel], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An insert that announces nothing, below the highest id read (a hole) and above it."""
    monkeypatch.setattr(tail_module, "CATCHUP_SECONDS", 0.3)
    serving, writer = wheels(), wheels()
    for n in range(3):
        writer.track(user_id="u", item_id=f"i{n}", type="click", event_id=f"e{n}")
    ids = dict(writer.store.engine.connect().execute(text("SELECT event_id, id FROM events")).all())
    with writer.store.write() as conn:  # leave a hole: the tail starts after e0, read e2 only
        conn.execute(text("DELETE FROM events WHERE event_id = 'e1'"))
    tail = EventTail(serving.store, ids["e0"])
    _listening(tail)
    assert tail.top == ids["e2"]
    sql = (
        "INSERT INTO events (id, event_id, user_idx, item_idx, type, value, ts, received_at) "
        "SELECT :id, :event_id, user_idx, item_idx, type, value, ts, received_at "
        "FROM events WHERE event_id = 'e0'"
    )
    with writer.store.write() as conn:
        conn.execute(text(sql), {"id": ids["e1"], "event_id": "quiet-hole"})
        conn.execute(text(sql), {"id": ids["e2"] + 100, "event_id": "quiet-top"})
    assert len(_wait_for(tail, 2, 2.0)) == 2
    assert tail.top == ids["e2"] + 100


@pytest.mark.postgres
def test_every_ingest_path_announces_its_ids(wheels: Callable[[], dfw.Flywheel]) -> None:
    """HTTP group commits (several batches in one statement), ``track`` and the importer."""
    serving, writer = wheels(), wheels()
    tail = EventTail(serving.store, 0)
    _listening(tail)
    now = time.time()
    batches = [
        Batch([Event(f"g{n}", f"u{n}", f"i{n}", "click", 1.0, now, None, None)], 0, now)
        for n in range(3)
    ]
    writer.ingestor.commit(batches)
    assert len(_wait_for(tail, 3, 1.0)) == 3
    writer.track(user_id="u", item_id="i9", type="click")
    assert len(_wait_for(tail, 1, 1.0)) == 1


@pytest.mark.postgres
def test_announcements_nobody_reads_are_joined(wheels: Callable[[], dfw.Flywheel]) -> None:
    """A replica that serves nothing for a while keeps a bounded list of announced ranges."""
    serving, writer = wheels(), wheels()
    tail = EventTail(serving.store, 0)
    _listening(tail)
    for n in range(3 * tail_module.MAX_PENDING):
        tail.on_events(10**9 + 2 * n, 10**9 + 2 * n)  # disjoint ranges of nothing
    writer.track(user_id="u", item_id="i0", type="click")
    time.sleep(0.2)
    assert len(tail._pending) <= tail_module.MAX_PENDING
    assert len(_wait_for(tail, 1, 1.0)) == 1


def test_id_set_holes_age_out() -> None:
    ids = IdSet(10, now=0.0)
    ids.add(np.array([12, 13, 15]), now=1.0)
    assert ids.top == 15
    assert ids.holes(since=0.0) == [(14, 14), (11, 11)]
    assert ids.missing(np.array([10, 11, 13, 14, 16])).tolist() == [False, True, False, True, True]
    ids.add(np.array([11]), now=2.0)
    assert ids.holes(since=0.0) == [(14, 14)]
    ids.add(np.array([20]), now=5.0)
    assert ids.holes(since=3.0) == [(16, 19)]  # the hole below 15 is older
    ids.forget(before=3.0)
    assert ids.holes(since=0.0) == [(16, 19)]
    assert not ids.missing(np.array([14])).any()  # forgotten: never looked for again
    ids.add(np.array([16, 17, 18, 19]), now=6.0)
    assert (ids.starts, ids.ends) == ([0], [20])
