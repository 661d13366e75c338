"""The columnar snapshot read on PostgreSQL: ADBC, the binary COPY fallback when the driver is
missing, and training on a store past the bulk-read threshold either way."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dataflywheel as dfw
from dataflywheel.ingest.importer import EventImporter
from dataflywheel.learn.snapshot import BULK_READ_ROWS, events_query, take_snapshot
from dataflywheel.store.bulk import read_columns, read_columns_copy

pytestmark = pytest.mark.postgres

N_EVENTS = 60_000
assert N_EVENTS > BULK_READ_ROWS


def write_events(path: Path, n: int = N_EVENTS, seed: int = 0) -> Path:
    """``n`` events of 600 users over 400 items, mixed types, in the last 30 days."""
    rng = np.random.default_rng(seed)
    now = time.time()
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{u}" for u in rng.integers(0, 600, n).tolist()],
                "item_id": [f"i{i}" for i in (rng.zipf(1.3, n) % 400).tolist()],
                "type": np.array(["click", "view", "watch", "rating"])[rng.integers(0, 4, n)],
                "value": rng.random(n) * 5,
                "timestamp": now - 30 * 86_400 + np.sort(rng.random(n)) * 29 * 86_400,
            }
        ),
        path,
    )
    return path


@pytest.fixture
def big_pg(postgres_url: str, tmp_path: Path) -> Iterator[dfw.Flywheel]:
    wheel = dfw.open(postgres_url, artifacts=str(tmp_path / "artifacts"), train_max_trials=1)
    try:
        result = EventImporter(wheel.store).run(write_events(tmp_path / "events.parquet"))
        assert result.accepted == N_EVENTS
        yield wheel
    finally:
        wheel.close()


@pytest.fixture
def without_adbc(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ADBC driver as if it were not installed (importing it raises ImportError)."""
    for name in list(sys.modules):
        if name.startswith("adbc_driver_postgresql"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql", None)
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)


def test_adbc_and_copy_reads_agree_with_a_plain_select(big_pg: dfw.Flywheel) -> None:
    query = events_query(big_pg.store.settings).params(after=0, upto=2**62)
    with big_pg.store.read() as conn:
        plain = np.array([tuple(row) for row in conn.execute(query)], dtype=np.float64)
        sql = str(query.compile(conn, compile_kwargs={"literal_binds": True}))
        via_adbc = read_columns(conn, sql, 5)
        via_copy = read_columns_copy(conn, sql, 5)
        empty = read_columns_copy(conn, "SELECT 1, 2 WHERE false", 2)
        nulls = read_columns_copy(conn, "SELECT NULL::integer, 2.5::numeric, 7::bigint", 3)
    assert plain.shape == (N_EVENTS, 5)
    np.testing.assert_array_equal(via_adbc, plain)
    np.testing.assert_array_equal(via_copy, plain)
    assert empty.shape == (0, 2)
    np.testing.assert_array_equal(nulls, [[np.nan, 2.5, 7.0]])


def test_training_past_the_bulk_threshold(big_pg: dfw.Flywheel) -> None:
    version = big_pg.train(model="popularity", budget=30)
    assert version["name"] == "popularity"
    assert take_snapshot(big_pg.store, record=False).n_events == N_EVENTS


@pytest.mark.usefixtures("without_adbc")
def test_training_without_the_adbc_driver_reads_through_copy(big_pg: dfw.Flywheel) -> None:
    with pytest.raises(ImportError):
        import adbc_driver_postgresql.dbapi  # noqa: F401
    snapshot = take_snapshot(big_pg.store, record=False)
    assert snapshot.n_events == N_EVENTS
    assert np.isfinite(snapshot.events.weight).all()
    version = big_pg.train(model="itemknn", budget=30)
    assert version["name"] == "itemknn"
