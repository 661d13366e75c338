"""`flywheel import events`: per-row rejections, batches and transactions, resumability."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import dataflywheel as dfw
from dataflywheel.errors import ValidationError
from dataflywheel.ingest import contract
from dataflywheel.ingest.importer import EventImporter


def test_nul_characters_are_rejected_per_row(wheel: dfw.Flywheel, tmp_path: Path) -> None:
    path = tmp_path / "events.csv"
    path.write_text(
        "event_id,user_id,item_id,recommendation_id,value\n"
        "e1,u1,i1,,4\n"
        "e2,u\x00,i2,,3\n"
        "e3,u3,i\x00,,5\n"
        "e\x004,u4,i4,,1\n"
        "e5,u5,i5,r\x00,2\n"
        "e6,u6,i6,r6,2\n"
    )
    result = EventImporter(wheel.store).run(path, default_type="rating")
    assert (result.accepted, result.rejected) == (2, 4)
    assert [(e["row"], e["field"]) for e in result.errors] == [
        (2, "user_id"),
        (3, "item_id"),
        (4, "event_id"),
        (5, "recommendation_id"),
    ]
    assert wheel.stats()["events"] == 2


def _ratings_csv(path: Path, n: int) -> dict[int, str]:
    """``n`` rows, some of them bad; returns the bad rows (1-based) and the field at fault."""
    bad: dict[int, str] = {}
    lines = ["user_id,item_id,value,timestamp"]
    for i in range(n):
        item, value, stamp = f"m{i % 37}", str(i % 5 + 1), str(1_600_000_000 + i)
        if i % 97 == 5:
            value, bad[i + 1] = "abc", "value"
        elif i % 89 == 7:
            stamp, bad[i + 1] = "not-a-time", "timestamp"
        elif i % 50 == 3:
            item, bad[i + 1] = "", "item_id"  # an empty cell is an empty id, not a missing one
        elif i % 41 == 2:
            stamp = "2021-01-01T00:00:00Z"
        lines.append(f"u{i % 23},{item},{value},{stamp}")
    path.write_text("\n".join(lines) + "\n")
    return bad


def test_small_batches_and_transactions_store_every_row_once(
    wheel: dfw.Flywheel, tmp_path: Path
) -> None:
    path = tmp_path / "ratings.csv"
    n = 3_000
    bad = _ratings_csv(path, n)
    importer = EventImporter(wheel.store, csv_block_bytes=4_096, commit_rows=700)
    result = importer.run(path, default_type="rating")
    assert (result.rows, result.rejected) == (n, len(bad))
    assert (result.accepted, result.duplicates) == (n - len(bad), 0)
    # The first errors (batch by batch, field by field), with their row numbers in the file.
    reported = [(e["row"], e["field"]) for e in result.errors]
    assert len(reported) == 20 and set(reported) <= set(bad.items())
    assert max(row for row, _ in reported) < sorted(bad)[25]
    with wheel.store.read() as conn:
        stored = conn.exec_driver_sql(
            "SELECT e.event_id, u.user_id, i.item_id, e.type, e.value, e.ts FROM events e "
            "JOIN users u ON u.idx = e.user_idx LEFT JOIN items i ON i.idx = e.item_idx"
        ).all()
    by_row = {int(event_id.rsplit("-", 1)[1]): row for event_id, *row in stored}
    assert len({event_id.rsplit("-", 1)[0] for event_id, *_ in stored}) == 1
    good = [i for i in range(n) if i + 1 not in bad]
    assert sorted(by_row) == good
    for i in good[::7]:
        stamp = 1_609_459_200.0 if i % 41 == 2 else 1_600_000_000.0 + i
        assert by_row[i] == [f"u{i % 23}", f"m{i % 37}", "rating", float(i % 5 + 1), stamp], i
    again = EventImporter(wheel.store, csv_block_bytes=4_096, commit_rows=700).run(
        path, default_type="rating"
    )
    assert (again.accepted, again.duplicates, again.rejected) == (0, n - len(bad), len(bad))
    assert wheel.stats()["events"] == n - len(bad)
    assert wheel.stats()["users"] == 23


def test_an_interrupted_import_keeps_committed_transactions_and_resumes(
    wheel: dfw.Flywheel, tmp_path: Path
) -> None:
    path = tmp_path / "events.parquet"
    n = 2_000
    pq.write_table(
        pa.table(
            {
                "user_id": [f"u{i % 31}" for i in range(n)],
                "item_id": [f"i{i % 17}" for i in range(n)],
                "type": ["click"] * n,
                "timestamp": [1_650_000_000 + i for i in range(n)],
            }
        ),
        path,
    )
    calls = 0

    def interrupt_in_the_second_transaction(rows: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 3:
            raise KeyboardInterrupt

    importer = EventImporter(wheel.store, batch_rows=250, commit_rows=500)
    with pytest.raises(KeyboardInterrupt):
        importer.run(path, progress=interrupt_in_the_second_transaction)
    assert wheel.stats()["events"] == 500
    resumed = EventImporter(wheel.store, batch_rows=250, commit_rows=500).run(path)
    assert (resumed.accepted, resumed.duplicates) == (n - 500, 500)
    assert wheel.stats()["events"] == n
    with wheel.store.read() as conn:
        (orphans,) = conn.exec_driver_sql(
            "SELECT count(*) FROM events e LEFT JOIN users u ON u.idx = e.user_idx "
            "WHERE u.idx IS NULL"
        ).one()
    assert orphans == 0


def test_a_read_error_in_a_later_batch_is_raised(wheel: dfw.Flywheel, tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    rows = [f"u{i},i{i},1,{1_600_000_000 + i}" for i in range(2_000)]
    rows[1_500] += ",unexpected"
    path.write_text("user_id,item_id,value,timestamp\n" + "\n".join(rows) + "\n")
    importer = EventImporter(wheel.store, csv_block_bytes=2_048, commit_rows=100)
    with pytest.raises(ValidationError, match="cannot read"):
        importer.run(path, default_type="rating")
    assert 0 < wheel.stats()["events"] < 1_500


def test_empty_ids_are_missing_ones_and_long_ids_are_rejected(
    wheel: dfw.Flywheel, tmp_path: Path
) -> None:
    path = tmp_path / "events.csv"
    long_id = "x" * 300
    path.write_text(
        "event_id,user_id,item_id,recommendation_id\n"
        "e1,u1,i1,r1\n"
        ",u2,i2,\n"
        ",u3,i3,\n"
        f"{long_id},u4,i4,\n"
        f"e5,u5,i5,{long_id}\n"
    )
    result = EventImporter(wheel.store).run(path, default_type="click")
    assert (result.accepted, result.rejected) == (3, 2)
    assert [(e["row"], e["field"]) for e in result.errors] == [
        (4, "event_id"),
        (5, "recommendation_id"),
    ]
    with wheel.store.read() as conn:
        stored = dict(conn.exec_driver_sql("SELECT event_id, recommendation_id FROM events").all())
    generated = sorted(k for k in stored if k != "e1")
    assert len(generated) == 2 and [k[-3:] for k in generated] == ["001", "002"]
    assert stored == {"e1": "r1", generated[0]: None, generated[1]: None}
    again = EventImporter(wheel.store).run(path, default_type="click")
    assert (again.accepted, again.duplicates) == (0, 3)


def test_empty_id_cells_and_times_without_offset_get_the_http_messages(
    wheel: dfw.Flywheel, tmp_path: Path
) -> None:
    """Numeric user and item ids with an empty cell (read as a null number) and a column of
    times without a UTC offset (read as timestamps): each row gets the message HTTP gives for
    an empty ``user_id`` or ``item_id`` and for such a time; times with an offset are kept."""
    path = tmp_path / "events.csv"
    path.write_text(
        "user_id,item_id,timestamp\n"
        "1,10,2024-01-01T00:00:00\n"
        ",11,2024-01-02T00:00:00.250\n"
        "3,12,2024-01-03T00:00:00.250\n"
        "4,,2024-01-04T00:00:00Z\n"
    )
    result = EventImporter(wheel.store).run(path, default_type="click")
    assert (result.accepted, result.rejected) == (0, 4)
    empty = contract.length_message(wheel.store.settings.max_id_length)
    assert [(e["row"], e["field"], e["error"]) for e in result.errors] == [
        (2, "user_id", empty),
        (4, "item_id", empty),
        (1, "timestamp", contract.NO_OFFSET),
        (3, "timestamp", contract.NO_OFFSET),
    ]
    lines = tmp_path / "events.jsonl"
    lines.write_text('{"user_id": "u1", "item_id": "i1", "timestamp": "2024-01-01T00:00:00"}\n')
    [error] = EventImporter(wheel.store).run(lines, default_type="click").errors
    assert (error["field"], error["error"]) == ("timestamp", contract.NO_OFFSET)

    zoned = tmp_path / "zoned.csv"
    zoned.write_text(
        "user_id,item_id,timestamp\n1,10,2024-01-01T00:00:00Z\n2,11,2024-01-01T02:00:00+02:00\n"
    )
    assert EventImporter(wheel.store).run(zoned, default_type="click").accepted == 2
    with wheel.store.read() as conn:
        stamps = conn.exec_driver_sql("SELECT ts FROM events").scalars().all()
    assert stamps == [1_704_067_200.0] * 2
