"""Export to a lake: Hive partitions by UTC day that read back equal to the store, incremental
and idempotent re-runs, an interrupted run repeated without duplicates, --since, impressions
with their propensities, and (PostgreSQL) no event lost to ids that commit out of order."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pyarrow.dataset as ds
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select, text

import dataflywheel as dfw
from dataflywheel.errors import ConflictError, ValidationError
from dataflywheel.store import schema
from dataflywheel.store.export import STATE_FILE, export, parse_since

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))
T0 = dt.datetime(2024, 3, 1, 22, 0, tzinfo=dt.UTC).timestamp()


def _events(start: int, n: int, base: float = T0) -> list[dict[str, Any]]:
    """``n`` events spread over several days, every third without an item or a context."""
    return [
        {
            "event_id": f"e{k}",
            "user_id": f"u{k % 7}",
            "item_id": None if k % 3 == 0 else f"i{k % 11}",
            "type": "click" if k % 2 else "like",
            "value": float(k % 5),
            "timestamp": base + k * 5_000.5,
            "recommendation_id": f"r{k}" if k % 4 == 0 else None,
            "context": {"k": k, "device": "tv"} if k % 3 else None,
        }
        for k in range(start, start + n)
    ]


def _track(wheel: dfw.Flywheel, events: list[dict[str, Any]]) -> None:
    result = wheel.track_many([{k: v for k, v in e.items() if v is not None} for e in events])
    assert result.accepted == len(events), result


def _lake(path: Path) -> list[dict[str, Any]]:
    table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    return sorted(table.to_pylist(), key=lambda row: row["event_id"])


def _expected(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for e in events:
        when = dt.datetime.fromtimestamp(e["timestamp"], dt.UTC)
        context = e["context"]
        rows.append(
            {
                "event_id": e["event_id"],
                "user_id": e["user_id"],
                "item_id": e["item_id"],
                "type": e["type"],
                "value": e["value"],
                "timestamp": when,
                "recommendation_id": e["recommendation_id"],
                "context": None if context is None else context,
                "date": when.date().isoformat(),
            }
        )
    return sorted(rows, key=lambda row: row["event_id"])


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for row in rows:
        row["context"] = None if row["context"] is None else orjson.loads(row["context"])
        row["date"] = str(row["date"])
    return rows


def _files(path: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(f.relative_to(path)): (f.stat().st_mtime_ns, f.read_bytes())
        for f in sorted(path.rglob("*"))
        if f.is_file()
    }


def test_export_reads_back_equal_to_the_store_and_is_incremental(
    store_url: str, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    first = _events(0, 60)
    with dfw.open(store_url) as wheel:
        _track(wheel, first)
        result = export(wheel.store, "events", lake)
        assert result.rows == 60
        assert _decoded(_lake(lake)) == _expected(first)
        # Partitions are the UTC days of the timestamps, one file each.
        days = sorted({row["date"] for row in _expected(first)})
        assert result.days == days
        assert sorted(p.name for p in lake.glob("date=*")) == [f"date={d}" for d in days]
        assert all(len(list(p.iterdir())) == 1 for p in lake.glob("date=*"))

        # New events, some of them late (timestamps inside days already exported).
        late = _events(60, 5, base=T0 - 60 * 5_000.5)
        fresh = _events(65, 30)
        _track(wheel, late + fresh)
        again = export(wheel.store, "events", lake)
        assert again.rows == 35
        rows = _decoded(_lake(lake))
        assert len({row["event_id"] for row in rows}) == len(rows) == 95
        assert rows == _expected(first + late + fresh)

        # Nothing new: nothing changes, not even a file's time.
        before = _files(lake)
        assert export(wheel.store, "events", lake).rows == 0
        assert _files(lake) == before


def test_an_interrupted_run_repeats_without_duplicates(sqlite_url: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with dfw.open(sqlite_url) as wheel:
        _track(wheel, _events(0, 40))
        export(wheel.store, "events", lake)
        state = (lake / STATE_FILE).read_bytes()
        _track(wheel, _events(40, 40))
        export(wheel.store, "events", lake)
        # The partitions of the second run were written but its state was not saved.
        (lake / STATE_FILE).write_bytes(state)
        _track(wheel, _events(80, 10))
        assert export(wheel.store, "events", lake).rows == 50
        rows = _lake(lake)
        assert [row["event_id"] for row in rows] == sorted(f"e{k}" for k in range(90))


def test_since_leaves_out_earlier_days(sqlite_url: str, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    events = _events(0, 60)
    since = "2024-03-03"
    with dfw.open(sqlite_url) as wheel:
        _track(wheel, events)
        result = export(wheel.store, "events", lake, since=parse_since(since))
    kept = [e for e in _expected(events) if e["date"] >= since]
    assert 0 < len(kept) < len(events) and result.rows == len(kept)
    assert _decoded(_lake(lake)) == kept
    assert min(result.days) == since


def test_impressions_carry_items_and_propensities(store_url: str, tmp_path: Path) -> None:
    lake = tmp_path / "impressions"
    with dfw.open(store_url, exploration={"name": "epsilon_greedy", "epsilon": 0.5}) as wheel:
        _track(wheel, _events(0, 60))
        wheel.train("popularity", budget=1)
        for user in ("u1", "u2", "new-user"):
            wheel.recommend(user, 4, context={"page": "home"})
        wheel.flush()
        result = export(wheel.store, "impressions", lake)
        with wheel.store.read() as conn:
            stored = conn.execute(select(schema.impressions)).mappings().all()
        with pytest.raises(ConflictError, match="holds an export of impressions"):
            export(wheel.store, "events", lake)
    assert result.rows == len(stored) == 3
    table = ds.dataset(lake, format="parquet", partitioning="hive").to_table()
    exported = {row["recommendation_id"]: row for row in table.to_pylist()}
    for row in stored:
        mine = exported[row["recommendation_id"]]
        assert mine["user_id"] == row["user_id"]
        assert mine["item_ids"] == row["item_ids"]
        assert mine["scores"] == pytest.approx(row["scores"])
        assert mine["propensities"] == pytest.approx(row["propensities"])
        assert mine["policy"] == row["policy"] and mine["model_version"] == row["model_version"]
        assert orjson.loads(mine["context"]) == row["context"]
        assert mine["timestamp"].timestamp() == pytest.approx(row["ts"], abs=1e-6)


@pytest.mark.postgres
def test_postgres_ids_committed_out_of_order_are_not_skipped(
    postgres_url: str, tmp_path: Path
) -> None:
    """A transaction that took a lower id but commits after a higher one: the export waits for
    it rather than moving its watermark past a row it cannot see yet."""
    lake = tmp_path / "lake"
    with dfw.open(postgres_url) as wheel:
        _track(wheel, _events(0, 10))
        insert = text(
            "INSERT INTO events (event_id, user_idx, item_idx, type, value, ts, received_at) "
            "SELECT :event_id, min(idx), NULL, 'click', 1, :ts, :ts FROM users"
        )
        slow = wheel.store.engine.connect()
        slow_tx = slow.begin()
        slow.execute(insert, {"event_id": "slow", "ts": T0})  # the lower id, not committed
        with wheel.store.write() as conn:
            conn.execute(insert, {"event_id": "fast", "ts": T0})
        threading.Timer(0.5, slow_tx.commit).start()
        started = time.monotonic()
        export(wheel.store, "events", lake)
        waited = time.monotonic() - started
        slow.close()
        export(wheel.store, "events", lake)
    ids = {row["event_id"] for row in _lake(lake)}
    assert {"slow", "fast"} <= ids and len(ids) == 12
    assert waited >= 0.4


def test_cli_export_and_its_errors(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'a.db'}"
    with dfw.open(db) as wheel:
        _track(wheel, _events(0, 20))
    env = {**os.environ, "NO_COLOR": "1"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [FLYWHEEL, "export", *args, "--db", db], capture_output=True, text=True, env=env
        )

    done = run("events", str(tmp_path / "lake"), "--format", "parquet", "--json")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout)["rows"] == 20
    for args, field in (
        (("events", str(tmp_path / "x"), "--format", "csv"), "format"),
        (("clicks", str(tmp_path / "x")), "kind"),
        (("events", str(tmp_path / "x"), "--since", "2024-02-30"), "since"),
    ):
        done = run(*args)
        assert done.returncode == 2, args
        assert done.stderr.strip().count("\n") == 0 and f"({field})" in done.stderr


@given(st.dates(min_value=dt.date(1970, 1, 1), max_value=dt.date(9999, 12, 31)))
def test_since_parses_every_date_as_its_utc_midnight(day: dt.date) -> None:
    midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    assert parse_since(day.isoformat()) == midnight.timestamp()


@given(st.text(max_size=12))
def test_since_rejects_anything_but_yyyy_mm_dd(value: str) -> None:
    try:
        valid = dt.date.fromisoformat(value).isoformat() == value
    except ValueError:
        valid = False
    if valid:
        assert parse_since(value) is not None
    else:
        with pytest.raises(ValidationError, match="YYYY-MM-DD") as caught:
            parse_since(value)
        assert caught.value.field == "since"


@pytest.mark.parametrize("value", ["20240301", "2024-W09-5", "2024-3-1", " 2024-03-01"])
def test_since_rejects_other_iso_forms(value: str) -> None:
    with pytest.raises(ValidationError):
        parse_since(value)
