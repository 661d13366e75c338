"""Bulk import of events, items and users from CSV, JSON Lines or Parquet files.

Events are validated column-wise (numpy/pyarrow) rather than row by row, and rows without an
``event_id`` get a deterministic one (file fingerprint + row number): re-running an interrupted
import stores each row once, so imports are resumable.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection

from dataflywheel.config import Settings
from dataflywheel.errors import ValidationError
from dataflywheel.ingest import contract
from dataflywheel.ingest.columns import as_strings, column, floats, has_nul, timestamps
from dataflywheel.ingest.contract import settle
from dataflywheel.ingest.files import (
    CHUNK_ROWS,
    CSV_BLOCK_BYTES,
    Format,
    detect_format,
    read_batches,
)
from dataflywheel.ingest.validate import parse_timestamp, utc_day
from dataflywheel.store.bulk import (
    EventColumns,
    GeneratedIds,
    create_keys,
    insert_event_columns,
)
from dataflywheel.store.store import Kind, Store

_ENTITY_TABLES: dict[Kind, tuple[str, str]] = {
    "users": ("users", "user_id"),
    "items": ("items", "item_id"),
}
# Rows per transaction. Each commit pays an fsync and a WAL checkpoint; an interrupted import
# loses only its open transaction and, re-run, skips what was committed.
COMMIT_ROWS = 500_000
MAX_REPORTED_ERRORS = 20
# A row error's message, or how to get it from the row's index in its batch: the message of the
# contract's own check of that cell, computed for the few reported rows only.
Reason = str | Callable[[int], str]


@dataclass
class ImportResult:
    """Counts of an import and the first few row errors (row numbers start at 1)."""

    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def reject(self, rows: np.ndarray, offset: int, field_name: str, reason: Reason) -> None:
        """Count ``rows`` (of the batch) as rejected; only the reported ones get a message."""
        self.rejected += len(rows)
        for row in rows[: max(0, MAX_REPORTED_ERRORS - len(self.errors))]:
            error = reason if isinstance(reason, str) else reason(int(row))
            self.errors.append({"row": int(row) + offset + 1, "field": field_name, "error": error})

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


def _fingerprint(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=6)
    stat = path.stat()
    digest.update(f"{path.resolve()}:{stat.st_size}".encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
    return digest.hexdigest()


def _value_bounds(settings: Settings, types: pa.Array | str) -> tuple[Any, Any]:
    """Each row's inclusive value bounds by its type (one look-up per distinct type)."""
    if isinstance(types, str):
        return settings.value_bound(types)
    encoded = pc.dictionary_encode(types)
    names = encoded.dictionary.to_pylist()
    # The last row serves rows without a type, which are rejected for that already.
    table = np.array([*map(settings.value_bound, names), (-np.inf, np.inf)])
    codes = encoded.indices.fill_null(len(names)).to_numpy(zero_copy_only=False)
    return table[codes, 0], table[codes, 1]


@dataclass
class _Prepared:
    """One batch of the file, validated and laid out as columns, waiting for its transaction."""

    rows: int
    now: float
    outcome: ImportResult
    users: pa.Array | None = None
    items: pa.Array | None = None
    event_ids: list[str] | GeneratedIds = field(default_factory=list)
    types: list[str] | str = ""
    values: list[float] = field(default_factory=list)
    stamps: list[float] = field(default_factory=list)
    recommendation_ids: list[str | None] | None = None


class EventImporter:
    """Imports event files through the bulk write path.

    The file is read in batches of ``batch_rows`` (CSV: ``csv_block_bytes``) and written in
    transactions of about ``commit_rows`` rows. Reading and validating the next batch (Arrow,
    numpy) runs in a helper thread while the current one is written: SQLite releases the GIL
    while it inserts, so with a spare core the two overlap.
    """

    def __init__(
        self,
        store: Store,
        *,
        batch_rows: int = CHUNK_ROWS,
        csv_block_bytes: int = CSV_BLOCK_BYTES,
        commit_rows: int = COMMIT_ROWS,
    ) -> None:
        self.store = store
        self.settings = store.settings
        self.batch_rows = batch_rows
        self.csv_block_bytes = csv_block_bytes
        self.commit_rows = commit_rows

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
        unknown = set(mapping) - set(contract.FIELDS)
        if unknown:
            raise ValidationError(
                f"cannot map {sorted(unknown)[0]!r}: not an event field", field="map"
            )
        if default_type is not None:
            contract.check_type(default_type, self.settings)
        prefix = _fingerprint(path)
        result = ImportResult()
        started = time.perf_counter()

        def prepared() -> Iterator[_Prepared]:
            offset = 0
            batches = read_batches(
                path,
                fmt_name,
                rows=self.batch_rows,
                csv_bytes=self.csv_block_bytes,
                time_column=mapping.get("timestamp", "timestamp"),
            )
            for batch in batches:
                yield self._prepare(batch, fmt_name, mapping, default_type, prefix, offset)
                offset += batch.num_rows

        users = _DenseIds(self.store, "users")
        items = _DenseIds(self.store, "items")
        with _Ahead(prepared()) as chunks:
            chunk = next(chunks, None)
            while chunk is not None:
                with self.store.write() as conn:
                    written = 0
                    while chunk is not None and written < self.commit_rows:
                        self._write(conn, chunk, result, users, items)
                        written += chunk.rows
                        result.rows += chunk.rows
                        if progress is not None:
                            progress(chunk.rows)
                        chunk = next(chunks, None)
                users.committed()
                items.committed()
        result.seconds = time.perf_counter() - started
        return result

    def _prepare(
        self,
        batch: pa.RecordBatch,
        fmt: Format,
        mapping: Mapping[str, str],
        default_type: str | None,
        prefix: str,
        offset: int,
    ) -> _Prepared:
        """Validate a batch column-wise and lay out its valid rows (no database access)."""
        n = batch.num_rows
        now = time.time()
        outcome = ImportResult()
        ok = np.ones(n, dtype=bool)

        def invalid(mask: np.ndarray, field_name: str, reason: Reason) -> None:
            bad = mask & ok
            if bad.any():
                outcome.reject(np.flatnonzero(bad), offset, field_name, reason)
                ok[bad] = False

        settings = self.settings
        max_len = settings.max_id_length

        def strings_of(array: pa.Array) -> Callable[[int], Any]:
            return lambda i: as_strings(array)[i].as_py()

        def check_ids(field_name: str, strings: pa.Array, *, required: bool, empty: bool) -> None:
            """Lengths and NUL; ``empty``: an empty cell means no id (one is generated)."""
            length = pc.utf8_length(strings).fill_null(-1).to_numpy(zero_copy_only=False)
            if required:
                invalid(length == -1, field_name, contract.IS_REQUIRED)
            bad = (length > max_len) | has_nul(strings)
            if not empty:
                bad |= length == 0
            invalid(bad, field_name, lambda i: cell_message(field_name, strings[i].as_py()))

        def cell_message(field_name: str, cell: Any) -> str:
            return contract.message_of(
                lambda: contract.check_id(cell, field_name, max_len), contract.IS_REQUIRED
            )

        users_col = column(batch, mapping, "user_id")
        if users_col is None:
            raise ValidationError(
                "the file has no user_id column (use --map user_id=COLUMN)", field="user_id"
            )
        users = as_strings(users_col)
        items_col = column(batch, mapping, "item_id")
        items = as_strings(items_col) if items_col is not None else None
        if fmt == "csv":  # an empty cell is an empty string, whatever type the column was read as
            users = users.fill_null("")
            items = None if items is None else items.fill_null("")
        check_ids("user_id", users, required=True, empty=False)
        if items is not None:
            check_ids("item_id", items, required=False, empty=False)

        types_col = column(batch, mapping, "type")
        types: pa.Array | str
        if types_col is None:
            if default_type is None:
                raise ValidationError("the file has no type column; pass --type TYPE", field="type")
            types = default_type
            contract.check_type(contract.check_id(default_type, "type", max_len), settings)
        else:
            types = as_strings(types_col)
            type_len = pc.utf8_length(types).fill_null(-1).to_numpy(zero_copy_only=False)
            invalid(type_len == -1, "type", contract.IS_REQUIRED)
            bad_type = (type_len == 0) | (type_len > contract.TYPE_MAX_LENGTH) | has_nul(types)
            if not settings.accept_unknown_types:
                known = pa.array(sorted(settings.signals), pa.string())
                bad_type |= ~pc.is_in(types, value_set=known).fill_null(False).to_numpy(
                    zero_copy_only=False
                )
            type_cells = types

            def type_message(i: int) -> str:
                cell = type_cells[i].as_py()
                return contract.message_of(
                    lambda: contract.check_type(contract.check_id(cell, "type", max_len), settings),
                    contract.length_message(contract.TYPE_MAX_LENGTH),
                )

            invalid(bad_type, "type", type_message)

        def type_of(i: int) -> str:
            return types if isinstance(types, str) else str(types[i].as_py())

        values_col = column(batch, mapping, "value")
        values = np.ones(n) if values_col is None else floats(values_col, default=1.0)
        low, high = _value_bounds(settings, types)
        value_cell = strings_of(values_col) if values_col is not None else None

        def value_message(i: int) -> str:
            # A cell that is not a number is checked as the text it is.
            value = values[i] if np.isfinite(values[i]) or value_cell is None else value_cell(i)
            return contract.message_of(
                lambda: contract.check_value(value, type_of(i), settings), contract.NOT_NUMBER
            )

        invalid(~np.isfinite(values) | (values < low) | (values > high), "value", value_message)

        ts_col = column(batch, mapping, "timestamp")
        stamps = np.full(n, now) if ts_col is None else timestamps(ts_col, text=fmt != "parquet")
        stamp_cell = strings_of(ts_col) if ts_col is not None else None

        def stamp_message(i: int) -> str:
            # Unparsable cells are reported as their text; a missing one is not a time either.
            stamp: Any = (
                stamps[i] if np.isfinite(stamps[i]) or stamp_cell is None else stamp_cell(i)
            )
            return contract.message_of(
                lambda: contract.check_timestamp(stamp, now, settings), contract.NOT_TIME
            )

        invalid(
            ~np.isfinite(stamps)
            | (stamps < contract.MIN_TIMESTAMP)
            | (stamps > now + settings.max_future_seconds),
            "timestamp",
            stamp_message,
        )

        for name in ("event_id", "recommendation_id"):
            optional = column(batch, mapping, name)
            if optional is not None:
                check_ids(name, as_strings(optional), required=False, empty=True)

        chunk = _Prepared(rows=n, now=now, outcome=outcome)
        kept = int(ok.sum())
        if kept == 0:
            return chunk
        everything = kept == n
        keep = pa.array(ok)

        def kept_of(array: pa.Array) -> pa.Array:
            return array if everything else array.filter(keep)

        rows = (np.flatnonzero(ok) + offset).tolist()
        ids_col = column(batch, mapping, "event_id")
        generated = GeneratedIds(f"{prefix}-", rows)
        if ids_col is None:
            chunk.event_ids = generated
        else:
            # A missing or empty id (an empty CSV cell) gets the generated one.
            given = kept_of(as_strings(ids_col)).to_pylist()
            if not all(given):
                made = generated.materialize()
                given = [e or made[j] for j, e in enumerate(given)]
            chunk.event_ids = given
        recs_col = column(batch, mapping, "recommendation_id")
        if recs_col is not None:
            recs = kept_of(as_strings(recs_col)).to_pylist()
            chunk.recommendation_ids = [r or None for r in recs]
        chunk.users = kept_of(users)
        chunk.items = kept_of(items) if items is not None else None
        chunk.types = types if isinstance(types, str) else kept_of(types).to_pylist()
        chunk.values = (values if everything else values[ok]).tolist()
        chunk.stamps = (stamps if everything else stamps[ok]).tolist()
        return chunk

    def _write(
        self,
        conn: Connection,
        chunk: _Prepared,
        result: ImportResult,
        users: _DenseIds,
        items: _DenseIds,
    ) -> None:
        """Map ids, insert and count one prepared batch in the caller's transaction."""
        outcome = chunk.outcome
        result.rejected += outcome.rejected
        result.errors.extend(outcome.errors[: max(0, MAX_REPORTED_ERRORS - len(result.errors))])
        store = self.store
        now = chunk.now
        kept = len(chunk.values)
        inserted = 0
        if kept:
            assert chunk.users is not None
            user_idx = users.map(conn, chunk.users, now)
            item_idx: list[int | None] | None = None
            if chunk.items is not None:
                item_idx = items.map(conn, chunk.items, now)
            inserted = insert_event_columns(
                conn,
                EventColumns(
                    event_id=chunk.event_ids,
                    user_idx=cast("list[int]", user_idx),
                    item_idx=item_idx,
                    type=chunk.types,
                    value=chunk.values,
                    ts=chunk.stamps,
                    received_at=now,
                    recommendation_id=chunk.recommendation_ids,
                ),
            )
        accepted, duplicates = settle(kept, inserted)
        store.record_ingest(conn, utc_day(now), accepted, duplicates, outcome.rejected)
        result.accepted += accepted
        result.duplicates += duplicates


class _Ahead:
    """Runs an iterator one item ahead of its consumer in a helper thread.

    Exceptions of the iterator are raised in the consumer; leaving the ``with`` block (done,
    an error, Ctrl-C) stops the helper after its current item.
    """

    def __init__(self, source: Iterator[_Prepared], depth: int = 1) -> None:
        self._source = source
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="import-reader", daemon=True)

    def __enter__(self) -> Iterator[_Prepared]:
        self._thread.start()
        return self._consume()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Empty):
            while True:  # unblock a helper waiting to hand over an item
                self._queue.get_nowait()
        self._thread.join(timeout=10)

    def _put(self, item: tuple[str, Any]) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._queue.put(item, timeout=0.1)
                return True
        return False

    def _produce(self) -> None:
        try:
            for item in self._source:
                if not self._put(("item", item)):
                    return
        except BaseException as exc:
            self._put(("error", exc))
            return
        self._put(("done", None))

    def _consume(self) -> Iterator[_Prepared]:
        while True:
            kind, value = self._queue.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value


class _DenseIds:
    """The dense ids of one import's users or items, kept for the whole import.

    Each batch's distinct keys are looked up here; only keys not met before reach the store
    (created with their rows in the batch's transaction). ``pending`` holds the ids created
    in the open transaction, handed to the store's id cache once it commits.
    """

    def __init__(self, store: Store, kind: Kind) -> None:
        self.store = store
        self.kind = kind
        self.known: dict[str, int] = {}
        self.pending: dict[str, int] = {}

    def map(self, conn: Connection, keys: pa.Array, now: float) -> list[int | None]:
        """Dense ids of a column of keys (nulls stay None)."""
        encoded = pc.dictionary_encode(keys)
        distinct: list[str] = encoded.dictionary.to_pylist()
        known = self.known
        unseen = [key for key in distinct if key not in known]
        if unseen:
            table, column = _ENTITY_TABLES[self.kind]
            created = create_keys(conn, table, column, unseen, now)
            known.update(created)
            self.pending.update(created)
        lookup = np.fromiter(map(known.__getitem__, distinct), np.int64, len(distinct))
        codes = encoded.indices
        if codes.null_count:
            dense = np.append(lookup, -1)[codes.fill_null(len(distinct)).to_numpy()]
            return [None if v < 0 else v for v in dense.tolist()]
        return lookup[codes.to_numpy()].tolist()

    def committed(self) -> None:
        """Tell the store's id cache about the ids created in the transaction just committed."""
        self.store.remember_ids(self.kind, self.pending)
        self.pending = {}


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
