"""Incremental export of events or impressions to Parquet, partitioned by UTC day (Hive style).

Layout: ``PATH/date=YYYY-MM-DD/part-0.parquet`` and the state file ``PATH/_flywheel_export.json``
holding the highest store id exported (readers such as ``pyarrow.dataset`` skip names starting
with ``_`` or ``.``). A run exports the rows stored after that id, in timestamp order, one day
at a time: each day's file is merged with the new rows, written under a temporary name and
renamed over the old one. Merging drops stored rows whose key (``event_id``,
``recommendation_id``) comes again, so a run interrupted before it saved its state repeats
without duplicating anything.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlalchemy import Connection, Select, func, select, text

from dataflywheel.errors import ConflictError, ValidationError
from dataflywheel.store import schema
from dataflywheel.store.store import Store

STATE_FILE = "_flywheel_export.json"
PART = "part-0.parquet"
DAY = 86_400
# Rows fetched from the store at a time: a chunk of Python tuples, never the whole range.
CHUNK = 50_000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

_UTC = pa.timestamp("us", tz="UTC")
_FLOATS = pa.list_(pa.float64())
SCHEMAS = {
    "events": pa.schema(
        [
            ("event_id", pa.string()),
            ("user_id", pa.string()),
            ("item_id", pa.string()),
            ("type", pa.string()),
            ("value", pa.float64()),
            ("timestamp", _UTC),
            ("recommendation_id", pa.string()),
            ("context", pa.string()),
        ]
    ),
    "impressions": pa.schema(
        [
            ("recommendation_id", pa.string()),
            ("user_id", pa.string()),
            ("timestamp", _UTC),
            ("model_version", pa.string()),
            ("policy", pa.string()),
            ("experiment_id", pa.string()),
            ("arm", pa.string()),
            ("item_ids", pa.list_(pa.string())),
            ("scores", _FLOATS),
            ("propensities", _FLOATS),
            ("context", pa.string()),
        ]
    ),
}
KEYS = {"events": "event_id", "impressions": "recommendation_id"}
_TABLES = {"events": schema.events, "impressions": schema.impressions}


def parse_since(value: str | None) -> float | None:
    """``YYYY-MM-DD`` as the epoch seconds of that UTC midnight; a clear error otherwise."""
    if value is None:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"since must be a date as YYYY-MM-DD, got {value!r}", field="since"
        ) from None
    return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()


@dataclass
class ExportResult:
    kind: str
    path: Path
    rows: int
    days: list[str]
    last_id: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "path": str(self.path),
            "rows": self.rows,
            "partitions": [f"date={day}" for day in self.days],
            "last_id": self.last_id,
            "seconds": round(self.seconds, 3),
        }


def export(
    store: Store,
    kind: str,
    path: Path,
    *,
    since: float | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Export ``kind`` (events or impressions) rows stored since the last export to ``path``.

    ``since`` (epoch seconds) leaves out rows with an earlier timestamp; the state still moves
    past them, so a later run does not pick them up either.
    """
    if kind not in SCHEMAS:
        raise ValidationError(f"kind must be events or impressions, got {kind!r}", field="kind")
    started = time.perf_counter()
    path.mkdir(parents=True, exist_ok=True)
    state = _read_state(path, kind)
    after = int(state.get("last_id", 0))
    upto = _committed_watermark(store, kind)
    if upto <= after:
        return ExportResult(kind, path, 0, [], after, time.perf_counter() - started)
    rows = 0
    days: list[str] = []
    with store.read() as conn:
        for day, table in _days(conn, kind, after, upto, since):
            _merge_day(path, kind, day, table)
            rows += table.num_rows
            days.append(day)
            if progress is not None:
                progress(table.num_rows)
    _write_state(path, {**state, "kind": kind, "last_id": upto, "exported_at": time.time()})
    return ExportResult(kind, path, rows, days, upto, time.perf_counter() - started)


def _committed_watermark(store: Store, kind: str) -> int:
    """The highest id below which every row is committed.

    SQLite has one writer at a time, so ids commit in order. PostgreSQL hands out ids when rows
    are inserted, and a transaction holding a lower id may commit after one holding a higher id:
    a SHARE lock waits for every open writer of the table, so the maximum read under it has no
    gaps left to fill (writers wait only for that instant).
    """
    table = _TABLES[kind]
    with store.read() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SET LOCAL lock_timeout = '60s'"))
            conn.execute(text(f"LOCK TABLE {table.name} IN SHARE MODE"))
        return int(conn.execute(select(func.max(table.c.id))).scalar_one() or 0)


def _query(kind: str, after: int, upto: int, since: float | None) -> Select[Any]:
    if kind == "events":
        e, u, i = schema.events.c, schema.users.c, schema.items.c
        query = (
            select(
                e.event_id,
                u.user_id,
                i.item_id,
                e.type,
                e.value,
                e.ts,
                e.recommendation_id,
                e.context,
            )
            .select_from(
                schema.events.join(schema.users, u.idx == e.user_idx).outerjoin(
                    schema.items, i.idx == e.item_idx
                )
            )
            .where(e.id > after, e.id <= upto)
        )
        ts, order = e.ts, e.id
    else:
        m = schema.impressions.c
        query = select(
            m.recommendation_id,
            m.user_id,
            m.ts,
            m.model_version,
            m.policy,
            m.experiment_id,
            m.arm,
            m.item_ids,
            m.scores,
            m.propensities,
            m.context,
        ).where(m.id > after, m.id <= upto)
        ts, order = m.ts, m.id
    if since is not None:
        query = query.where(ts >= since)
    return query.order_by(ts, order)


def _days(
    conn: Connection, kind: str, after: int, upto: int, since: float | None
) -> Iterator[tuple[str, pa.Table]]:
    """The rows of ``(after, upto]`` as one Arrow table per UTC day, in day order."""
    result = conn.execution_options(stream_results=True, yield_per=CHUNK).execute(
        _query(kind, after, upto, since)
    )
    pending: list[pa.Table] = []
    current: int | None = None
    for rows in result.partitions():
        table = _to_arrow(kind, rows)
        seconds = pc.divide(pc.cast(table.column("timestamp"), pa.int64()), 1_000_000)
        day_numbers = np.floor_divide(seconds.to_numpy(), DAY)
        # Rows come in timestamp order: cut the chunk where the day changes.
        cuts = np.flatnonzero(np.diff(day_numbers)) + 1
        for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), table.num_rows], strict=True):
            day = int(day_numbers[start])
            if current is not None and day != current:
                yield _iso(current), pa.concat_tables(pending)
                pending = []
            current = day
            pending.append(table.slice(start, stop - start))
    if current is not None:
        yield _iso(current), pa.concat_tables(pending)


def _iso(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def _json(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode()


def _micros(seconds: list[float]) -> pa.Array:
    return pa.array(np.round(np.asarray(seconds, dtype=np.float64) * 1e6).astype(np.int64))


def _to_arrow(kind: str, rows: Sequence[Any]) -> pa.Table:
    columns = list(zip(*rows, strict=True))
    target = SCHEMAS[kind]
    if kind == "events":
        event_id, user_id, item_id, type_, value, ts, rec, context = columns
        arrays: list[Any] = [event_id, user_id, item_id, type_, value]
        arrays += [_micros(list(ts)).cast(_UTC), rec, [_json(c) for c in context]]
    else:
        rec, user_id, ts, version, policy, experiment, arm, items, scores, props, context = columns
        arrays = [rec, user_id, _micros(list(ts)).cast(_UTC), version, policy, experiment, arm]
        arrays += [items, scores, props, [_json(c) for c in context]]
    return pa.Table.from_arrays(
        [pa.array(a, type=f.type) for a, f in zip(arrays, target, strict=True)], schema=target
    )


def _merge_day(path: Path, kind: str, day: str, new: pa.Table) -> None:
    """Rewrite the day's file as its stored rows (less any that come again) plus ``new``."""
    folder = path / f"date={day}"
    folder.mkdir(exist_ok=True)
    final = folder / PART
    if final.exists():
        stored = pq.read_table(final).cast(SCHEMAS[kind])
        key = KEYS[kind]
        keep = pc.invert(pc.is_in(stored.column(key), value_set=new.column(key)))
        new = pa.concat_tables([stored.filter(keep), new])
    new = new.sort_by([("timestamp", "ascending"), (KEYS[kind], "ascending")])
    temporary = folder / f".{PART}.{os.getpid()}.tmp"
    pq.write_table(new, temporary, compression="zstd")
    os.replace(temporary, final)


def _read_state(path: Path, kind: str) -> dict[str, Any]:
    file = path / STATE_FILE
    try:
        state: dict[str, Any] = orjson.loads(file.read_bytes())
    except FileNotFoundError:
        return {}
    except orjson.JSONDecodeError as exc:
        raise ValidationError(f"{file} is not valid JSON: {exc}", field="path") from exc
    if state.get("kind") not in (None, kind):
        raise ConflictError(
            f"{path} holds an export of {state['kind']}; export {kind} into another directory",
            field="path",
        )
    return state


def _write_state(path: Path, state: dict[str, Any]) -> None:
    temporary = path / f".{STATE_FILE}.{os.getpid()}.tmp"
    temporary.write_bytes(orjson.dumps(state, option=orjson.OPT_INDENT_2))
    os.replace(temporary, path / STATE_FILE)
