"""Columns of an imported Arrow batch as numpy: looked up through the mapping, cast, parsed.

Whole columns are cast at once; only the values a cast cannot take (a non-number, an RFC 3339
timestamp string) are parsed one by one, so a bad row is rejected alone.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dataflywheel.errors import ValidationError
from dataflywheel.ingest.validate import parse_timestamp


def column(batch: pa.RecordBatch, mapping: Mapping[str, str], name: str) -> pa.Array | None:
    source = mapping.get(name, name)
    index = batch.schema.get_field_index(source)
    return None if index < 0 else batch.column(index)


def as_strings(array: pa.Array) -> pa.Array:
    return array if pa.types.is_string(array.type) else pc.cast(array, pa.string())


def timestamps(array: pa.Array, *, text: bool) -> np.ndarray:
    """Epoch seconds (NaN where missing or unparsable). ``text``: the file is text (CSV, JSON
    Lines), whose times the reader typed without a UTC offset are refused, as over HTTP; a
    Parquet timestamp column without a zone holds UTC."""
    if pa.types.is_timestamp(array.type):
        if text and array.type.tz is None:
            return np.full(len(array), math.nan)
        micros = pc.cast(pc.cast(array, pa.timestamp("us", tz="UTC")), pa.int64())
        return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
    out = floats(array, default=math.nan)
    # Only the rows that are not numbers are parsed one by one (RFC 3339 strings).
    unparsed = np.flatnonzero(np.isnan(out))
    if unparsed.size:
        raws = as_strings(array.take(pa.array(unparsed))).to_pylist()
        for i, raw in zip(unparsed.tolist(), raws, strict=True):
            if raw is not None:
                with contextlib.suppress(ValidationError):
                    out[i] = parse_timestamp(raw)
    return out


def floats(array: pa.Array, default: float) -> np.ndarray:
    """Numbers of a column (``default`` where missing, NaN where not a number)."""
    with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pc.cast(array, pa.float64()).fill_null(default).to_numpy(zero_copy_only=False)
    # Some value is not a number: parse one by one so only those rows are rejected.
    out = np.full(len(array), default)
    for i, raw in enumerate(as_strings(array).to_pylist()):
        if raw is not None:
            try:
                out[i] = float(raw)
            except ValueError:
                out[i] = math.nan
    return out


def has_nul(strings: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Rows holding a NUL character, which PostgreSQL text cannot store."""
    found = pc.match_substring(strings, "\x00").fill_null(False)
    return np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
