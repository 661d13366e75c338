"""Snapshots read incrementally in one process must equal a fresh full read."""

from __future__ import annotations

import numpy as np
import pytest

import dataflywheel as dfw
from dataflywheel.learn import snapshot
from dataflywheel.learn.snapshot import EventArrays, read_events, take_snapshot


def _batch(start: int, n: int) -> list[dict[str, object]]:
    return [
        {
            "event_id": f"e{start + j}",
            "user_id": f"u{(start + j) % 7}",
            "item_id": f"i{(start + j) % 11}",
            "type": ["click", "like", "dislike", "watch"][(start + j) % 4],
            "value": 0.5,
            "timestamp": 1.7e9 + start + j,
        }
        for j in range(n)
    ]


def _fresh_read(url: str, upto: int) -> EventArrays:
    """A read by a newly opened store, which has read nothing before."""
    with dfw.open(url) as other:
        return read_events(other.store, upto=upto)[0]


def _assert_same(got: EventArrays, want: EventArrays) -> None:
    assert len(got) == len(want) > 0
    for column in ("user_idx", "item_idx", "weight", "timestamp"):
        np.testing.assert_array_equal(getattr(got, column), getattr(want, column))


def test_incremental_reads_equal_full_reads(store_url: str) -> None:
    with dfw.open(store_url) as wheel:
        for start in (0, 40, 90):
            wheel.track_many(_batch(start, 40 + start // 10))
            snapshot = take_snapshot(wheel.store, record=False)
            _assert_same(snapshot.events, _fresh_read(store_url, snapshot.watermark))
        # An earlier watermark gives exactly the events up to it.
        _assert_same(read_events(wheel.store, upto=20)[0], _fresh_read(store_url, 20))


def test_reads_split_over_processes_equal_one_read(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long SQLite reads go to one process per core; the slices join into the same arrays."""
    with dfw.open(sqlite_url) as wheel:
        wheel.track_many(_batch(0, 300))
        upto = wheel.store.latest_event_id()
    whole = _fresh_read(sqlite_url, upto)
    monkeypatch.setattr(snapshot, "PARALLEL_READ_ROWS", 10)
    monkeypatch.setattr(snapshot.os, "cpu_count", lambda: 3)
    calls: list[int] = []
    real = snapshot.read_slices
    monkeypatch.setattr(
        snapshot,
        "read_slices",
        lambda path, statements, width: (
            calls.append(len(statements)) or real(path, statements, width)
        ),
    )
    _assert_same(_fresh_read(sqlite_url, upto), whole)
    assert calls == [3]
