"""Import files read as Arrow record batches: the format from the name, CSV streamed by block,
JSON Lines and Parquet by rows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from dataflywheel.errors import ValidationError

__all__ = ["CHUNK_ROWS", "CSV_BLOCK_BYTES", "Format", "detect_format", "read_batches"]

Format = Literal["csv", "jsonl", "parquet"]
# Rows per batch read from the file (CSV: bytes per block). Small enough that the next batch
# is validated while the current one is inserted, large enough that per-batch costs vanish.
CHUNK_ROWS = 100_000
CSV_BLOCK_BYTES = 4 << 20


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


def read_batches(
    path: Path,
    fmt: Format,
    *,
    rows: int = CHUNK_ROWS,
    csv_bytes: int = CSV_BLOCK_BYTES,
    time_column: str | None = None,
) -> Iterator[pa.RecordBatch]:
    """Stream the file as Arrow record batches of about ``rows`` rows (CSV: ``csv_bytes``).

    JSON Lines: a ``time_column`` Arrow types as a timestamp is read again as text, since its
    JSON reader types "2024-01-02T03:04:05Z" and "2024-01-02T03:04:05" alike as zoneless and
    the contract refuses the second.
    """
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq  # each reader is imported when its format is read

            yield from pq.ParquetFile(path).iter_batches(batch_size=rows)
        elif fmt == "csv":
            options = pacsv.ReadOptions(block_size=csv_bytes)
            yield from pacsv.open_csv(path, read_options=options)
        else:
            import pyarrow.json as pajson

            table = _read_json(pajson, path, time_column)
            yield from table.to_batches(max_chunksize=rows)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValidationError(f"cannot read {path.name} as {fmt}: {exc}", field="file") from exc


def _read_json(pajson: Any, path: Path, time_column: str | None) -> pa.Table:
    table = pajson.read_json(path)
    names = table.schema.names
    if time_column in names and pa.types.is_timestamp(table.schema.field(time_column).type):
        # Only then is the offset lost; numbers, other text or no such column read as they are.
        options = pajson.ParseOptions(explicit_schema=pa.schema([(time_column, pa.string())]))
        table = pajson.read_json(path, parse_options=options).select(names)
    return table
