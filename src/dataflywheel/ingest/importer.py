"""Bulk import of events, items and users from CSV, JSON Lines or Parquet files.

Events are validated column-wise (numpy/pyarrow) rather than row by row, and rows without an
``event_id`` get a deterministic one (file fingerprint + row number): re-running an interrupted
import stores each row once, so imports are resumable.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq
from sqlalchemy import Connection

from dataflywheel.errors import ValidationError
from dataflywheel.ingest.service import _day
from dataflywheel.ingest.validate import MIN_TIMESTAMP, TYPE_MAX_LENGTH, parse_timestamp
from dataflywheel.store.bulk import EventRow, insert_events
from dataflywheel.store.store import Kind, Store

Format = Literal["csv", "jsonl", "parquet"]
CHUNK_ROWS = 200_000
MAX_REPORTED_ERRORS = 20
EVENT_COLUMNS = (
    "event_id",
    "user_id",
    "item_id",
    "type",
    "value",
    "timestamp",
    "recommendation_id",
)


@dataclass
class ImportResult:
    """Counts of an import and the first few row errors (row numbers start at 1)."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, rows: np.ndarray, offset: int, field_name: str, reason: str) -> None:
        self.rejected += len(rows)
        for row in rows[: max(0, MAX_REPORTED_ERRORS - len(self.errors))]:
            self.errors.append({"row": int(row) + offset + 1, "field": field_name, "error": reason})

    def to_dict(self) -> dict[str, Any]:
        rate = self.rows / self.seconds if self.seconds > 0 else 0.0
        return {
            "rows": self.rows,
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "errors": self.errors,
            "seconds": round(self.seconds, 3),
            "rows_per_second": round(rate),
        }


def detect_format(path: Path, fmt: str | None) -> Format:
    """The file's format from ``fmt`` or its suffix; also checks that the file exists."""
    if not path.is_file():
        raise ValidationError(f"no such file: {path}", field="file")
    name = fmt or {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(
        path.suffix.lower(), ""
    )
    if name not in ("csv", "jsonl", "parquet"):
        raise ValidationError(
            f"cannot tell the format of {path.name}; pass --format csv|jsonl|parquet",
            field="format",
        )
    return name  # type: ignore[return-value]


def parse_mapping(spec: str | None) -> dict[str, str]:
    """``user_id=userId,item_id=movieId`` → {"user_id": "userId", "item_id": "movieId"}."""
    mapping: dict[str, str] = {}
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        target, sep, source = part.partition("=")
        if not sep or not target.strip() or not source.strip():
            raise ValidationError(f"{part!r} is not FIELD=COLUMN", field="map")
        mapping[target.strip()] = source.strip()
    return mapping


def read_batches(path: Path, fmt: Format) -> Iterator[pa.RecordBatch]:
    """Stream the file as Arrow record batches (all columns as read by Arrow)."""
    try:
        if fmt == "parquet":
            yield from pq.ParquetFile(path).iter_batches(batch_size=CHUNK_ROWS)
        elif fmt == "csv":
            reader = pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=32 << 20))
            yield from reader
        else:
            table = pajson.read_json(path)
            yield from table.to_batches(max_chunksize=CHUNK_ROWS)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"cannot read {path.name} as {fmt}: {exc}", field="file") from exc


def _fingerprint(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=6)
    stat = path.stat()
    digest.update(f"{path.resolve()}:{stat.st_size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _column(batch: pa.RecordBatch, mapping: Mapping[str, str], name: str) -> pa.Array | None:
    source = mapping.get(name, name)
    index = batch.schema.get_field_index(source)
    return None if index < 0 else batch.column(index)


def _as_strings(array: pa.Array) -> pa.Array:
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def _timestamps(array: pa.Array) -> np.ndarray:
    """Epoch seconds (NaN where missing or unparsable)."""
    if pa.types.is_timestamp(array.type):
        micros = pc.cast(pc.cast(array, pa.timestamp("us", tz="UTC")), pa.int64())
        return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    out = _floats(array, default=math.nan)
    for i, raw in enumerate(_as_strings(array).to_pylist()):
        if raw is not None and math.isnan(out[i]):
            with contextlib.suppress(ValidationError):
                out[i] = parse_timestamp(raw)
    return out


def _floats(array: pa.Array, default: float) -> np.ndarray:
    """Numbers of a column (``default`` where missing, NaN where not a number)."""
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(array, pa.float64()).fill_null(default).to_numpy(zero_copy_only=False)
    # Some value is not a number: parse one by one so only those rows are rejected.
    out = np.full(len(array), default)
    for i, raw in enumerate(_as_strings(array).to_pylist()):
        if raw is not None:
            try:
                out[i] = float(raw)
            except ValueError:
                out[i] = math.nan
    return out


class EventImporter:
    """Imports event files through the bulk write path, one transaction per chunk."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.settings = store.settings

    def run(
        self,
        path: Path,
        *,
        fmt: str | None = None,
        mapping: Mapping[str, str] | None = None,
        default_type: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportResult:
        fmt_name = detect_format(path, fmt)
        mapping = dict(mapping or {})
        unknown = set(mapping) - set(EVENT_COLUMNS) - {"context"}
        if unknown:
            raise ValidationError(
                f"cannot map {sorted(unknown)[0]!r}: not an event field", field="map"
            )
        if default_type is not None and default_type not in self.settings.signals:
            raise ValidationError(f"unknown event type {default_type!r}", field="type")
        prefix = _fingerprint(path)
        result = ImportResult()
        started = time.perf_counter()
        offset = 0
        for batch in read_batches(path, fmt_name):
            self._import_batch(batch, mapping, default_type, prefix, offset, result)
            offset += batch.num_rows
            result.rows = offset
            if progress is not None:
                progress(batch.num_rows)
        result.seconds = time.perf_counter() - started
        return result

    def _import_batch(
        self,
        batch: pa.RecordBatch,
        mapping: Mapping[str, str],
        default_type: str | None,
        prefix: str,
        offset: int,
        result: ImportResult,
    ) -> None:
        n = batch.num_rows
        now = time.time()
        ok = np.ones(n, dtype=bool)

        def invalid(mask: np.ndarray, field_name: str, reason: str) -> None:
            bad = mask & ok
            if bad.any():
                result.reject(np.flatnonzero(bad), offset, field_name, reason)
                ok[bad] = False

        users_col = _column(batch, mapping, "user_id")
        if users_col is None:
            raise ValidationError(
                "the file has no user_id column (use --map user_id=COLUMN)", field="user_id"
            )
        users = _as_strings(users_col)
        max_len = self.settings.max_id_length
        user_len = pc.utf8_length(users).fill_null(0).to_numpy(zero_copy_only=False)
        invalid(
            (user_len == 0) | (user_len > max_len), "user_id", f"must be 1 to {max_len} characters"
        )
        invalid(_has_nul(users), "user_id", "must not contain NUL characters")

        items_col = _column(batch, mapping, "item_id")
        items = _as_strings(items_col) if items_col is not None else pa.nulls(n, pa.string())
        item_len = pc.utf8_length(items).to_numpy(zero_copy_only=False)
        item_len = np.where(np.isnan(item_len.astype(float)), 1, item_len)
        invalid(
            (item_len == 0) | (item_len > max_len), "item_id", f"must be 1 to {max_len} characters"
        )
        invalid(_has_nul(items), "item_id", "must not contain NUL characters")

        types_col = _column(batch, mapping, "type")
        if types_col is None:
            if default_type is None:
                raise ValidationError("the file has no type column; pass --type TYPE", field="type")
            types = pa.array([default_type] * n, pa.string())
        else:
            types = _as_strings(types_col)
        type_len = pc.utf8_length(types).fill_null(0).to_numpy(zero_copy_only=False)
        invalid(type_len > TYPE_MAX_LENGTH, "type", f"must be 1 to {TYPE_MAX_LENGTH} characters")
        if not self.settings.accept_unknown_types:
            known = pa.array(sorted(self.settings.signals), pa.string())
            invalid(
                ~pc.is_in(types, value_set=known).fill_null(False).to_numpy(zero_copy_only=False),
                "type",
                "unknown event type; configure it under [signals]",
            )

        values_col = _column(batch, mapping, "value")
        values = np.ones(n) if values_col is None else _floats(values_col, default=1.0)
        invalid(~np.isfinite(values), "value", "must be a finite number")

        ts_col = _column(batch, mapping, "timestamp")
        stamps = np.full(n, now) if ts_col is None else _timestamps(ts_col)
        invalid(
            ~np.isfinite(stamps) | (stamps < MIN_TIMESTAMP),
            "timestamp",
            "missing or not a time after 1990",
        )
        invalid(stamps > now + self.settings.max_future_seconds, "timestamp", "is in the future")

        for name in ("event_id", "recommendation_id"):
            optional = _column(batch, mapping, name)
            if optional is not None:
                invalid(_has_nul(_as_strings(optional)), name, "must not contain NUL characters")

        keep = pa.array(ok)
        kept = int(ok.sum())
        if kept == 0:
            self._count(now, 0, 0, n)
            return
        rows_idx = np.flatnonzero(ok) + offset
        ids_col = _column(batch, mapping, "event_id")
        given = _as_strings(ids_col).filter(keep).to_pylist() if ids_col is not None else None
        event_ids = [
            e if given is not None and (e := given[j]) is not None else f"{prefix}-{row:012d}"
            for j, row in enumerate(rows_idx.tolist())
        ]
        recs_col = _column(batch, mapping, "recommendation_id")
        recs = _as_strings(recs_col).filter(keep).to_pylist() if recs_col is not None else None
        store = self.store
        with store.write() as conn:
            user_idx, new_users = _dense(store, conn, "users", users.filter(keep), now)
            item_idx, new_items = _dense(store, conn, "items", items.filter(keep), now)
            rows: list[EventRow] = list(
                zip(
                    event_ids,
                    user_idx,
                    item_idx,
                    types.filter(keep).to_pylist(),
                    values[ok].tolist(),
                    stamps[ok].tolist(),
                    itertools.repeat(now, kept),
                    recs if recs is not None else itertools.repeat(None, kept),
                    itertools.repeat(None, kept),
                    strict=False,
                )
            )
            inserted = insert_events(conn, rows)
            store.record_ingest(conn, _day(now), inserted, kept - inserted, n - kept)
        store.remember_ids("users", new_users)
        store.remember_ids("items", new_items)
        result.accepted += inserted
        result.duplicates += kept - inserted

    def _count(self, now: float, accepted: int, duplicates: int, rejected: int) -> None:
        with self.store.write() as conn:
            self.store.record_ingest(conn, _day(now), accepted, duplicates, rejected)


def _has_nul(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows holding a NUL character, which PostgreSQL text cannot store."""
    found = pc.match_substring(strings, "\x00").fill_null(False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)


def _dense(
    store: Store, conn: Connection, kind: Kind, keys: pa.Array, now: float
) -> tuple[list[int | None], dict[str, int]]:
    """Dense ids for a column of keys (nulls stay None), resolving each distinct key once."""
    encoded = (
        pc.dictionary_encode(keys).combine_chunks()
        if isinstance(keys, pa.ChunkedArray)
        else pc.dictionary_encode(keys)
    )
    distinct = encoded.dictionary.to_pylist()
    ids, learned = store.resolve_ids(conn, kind, distinct, now)
    lookup = np.array([ids[k] for k in distinct] + [-1], dtype=np.int64)
    codes = encoded.indices.fill_null(len(distinct)).to_numpy(zero_copy_only=False)
    dense = lookup[codes]
    if encoded.indices.null_count:
        return [None if v < 0 else v for v in dense.tolist()], learned
    return dense.tolist(), learned


def import_entities(
    store: Store,
    kind: Kind,
    path: Path,
    *,
    fmt: str | None = None,
    mapping: Mapping[str, str] | None = None,
) -> int:
    """Upsert users or items from a file with an ``id`` column (or ``user_id``/``item_id``).

    Columns ``categories`` (a list, or a ``|``-separated string), ``hidden`` and ``created_at``
    are recognised (``mapping`` renames, e.g. ``categories=genres``); every other column
    becomes an attribute.
    """
    fmt_name = detect_format(path, fmt)
    mapping = dict(mapping or {})
    key_names = [mapping.get("id", "id"), kind[:-1] + "_id"]
    total = 0
    now = time.time()
    for batch in read_batches(path, fmt_name):
        columns = batch.to_pydict()
        for target in ("categories", "hidden", "created_at"):
            source = mapping.get(target)
            if source is not None and source in columns:
                columns[target] = columns.pop(source)
        key = next((k for k in key_names if k in columns), None)
        if key is None:
            raise ValidationError("the file has no id column (use --map id=COLUMN)", field="id")
        records = [_entity_from_row(columns, i, key) for i in range(batch.num_rows)]
        total += store.upsert_entities(kind, records, now)
    return total


def _entity_from_row(columns: Mapping[str, list[Any]], i: int, key: str) -> dict[str, Any]:
    record: dict[str, Any] = {"id": str(columns[key][i]), "attributes": {}}
    for name, values in columns.items():
        value = values[i]
        if name == key or value is None:
            continue
        if name == "categories":
            record["categories"] = value.split("|") if isinstance(value, str) else list(value)
        elif name == "hidden":
            record["hidden"] = bool(value)
        elif name == "created_at":
            record["created_at"] = parse_timestamp(value, field="created_at")
        else:
            record["attributes"][name] = orjson.loads(orjson.dumps(value, default=str))
    return record
