"""The event contract, defined once: field names, limits, checks and their messages.

HTTP (the msgspec decode in :mod:`~dataflywheel.ingest.wire` and
:class:`~dataflywheel.ingest.validate.EventValidator`), file import (column-wise, in
:mod:`~dataflywheel.ingest.importer`) and Python (``Flywheel.track``) check events with these
functions, or with masks that agree with them and take the message of a rejected row from them;
the OpenAPI model ``EventIn`` is built from the same limits. A bad event is therefore reported
with the same field and message whichever way it came in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dataflywheel.config import Settings
from dataflywheel.errors import ValidationError

# Field order of the JSON object (and of the OpenAPI model).
FIELDS = (
    "event_id",
    "user_id",
    "item_id",
    "type",
    "value",
    "timestamp",
    "recommendation_id",
    "context",
)
ID_FIELDS = ("event_id", "user_id", "item_id", "recommendation_id")
REQUIRED = ("user_id", "type")
DEFAULT_VALUE = 1.0
# The widest id any store holds (``max_id_length`` may only lower it).
MAX_ID_LENGTH = 256
# The width of events.type: PostgreSQL refuses longer values (SQLite would store them).
TYPE_MAX_LENGTH = 64
# Earliest accepted timestamp (1990-01-01): older ones are almost always unit mistakes.
MIN_TIMESTAMP = 631_152_000.0

IS_REQUIRED = "is required"
HAS_NUL = "must not contain NUL characters"
NOT_NUMBER = "must be a number"
NOT_FINITE = "must be a finite number"
NOT_OBJECT = "must be a JSON object"
NOT_TIME = "must be an RFC 3339 string or epoch seconds"
TOO_EARLY = "must be a time after 1990-01-01"
NO_OFFSET = "RFC 3339 timestamp needs a UTC offset or Z"

DESCRIPTIONS = {
    "event_id": "Client-chosen id; retries with it are no-ops",
    "type": "An event type configured under [signals]",
    "value": "Within the type's bounds (setting value_bounds)",
    "timestamp": "RFC 3339 or epoch seconds; at most max_future_seconds ahead",
}


def length_message(limit: int) -> str:
    return f"must be 1 to {limit} characters"


def check_id(value: Any, field: str, max_length: int) -> str:
    """A present id field: a non-empty string without NUL of at most ``max_length``."""
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=field)
    if not value or len(value) > max_length:
        raise ValidationError(length_message(max_length), field=field)
    if "\x00" in value:
        # PostgreSQL text cannot hold NUL; refusing it everywhere keeps both stores alike.
        raise ValidationError(HAS_NUL, field=field)
    return value


def check_type(event_type: str, settings: Settings) -> None:
    if event_type not in settings.signals and not settings.accept_unknown_types:
        raise ValidationError(
            f"unknown event type {event_type!r}; configure it under [signals]", field="type"
        )
    if len(event_type) > TYPE_MAX_LENGTH:
        raise ValidationError(length_message(TYPE_MAX_LENGTH), field="type")


def check_value(value: Any, event_type: str, settings: Settings) -> float:
    """A number, finite and within the type's ``value_bounds``."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError(NOT_NUMBER, field="value")
    if not math.isfinite(value):
        raise ValidationError(NOT_FINITE, field="value")
    low, high = settings.value_bound(event_type)
    if not low <= value <= high:
        raise ValidationError(
            f"{value:g} is outside [{low:g}, {high:g}] for type {event_type!r} "
            "(setting value_bounds)",
            field="value",
        )
    return float(value)


def common_value_bound(settings: Settings) -> tuple[float, float]:
    """Values within the bounds of every type (what a check without the type lets through)."""
    bounds = [*settings.value_bounds.values(), settings.value_bound("")]
    return max(low for low, _ in bounds), min(high for _, high in bounds)


def parse_timestamp(raw: Any, field: str = "timestamp") -> float:
    """RFC 3339 string or epoch seconds → epoch seconds."""
    if isinstance(raw, bool):
        raise ValidationError(NOT_TIME, field=field)
    if isinstance(raw, int | float):
        ts = float(raw)
    elif isinstance(raw, str):
        try:
            parsed = datetime.fromisoformat(raw)
        except ValueError:
            raise ValidationError(
                f"{raw[:40]!r} is not an RFC 3339 timestamp", field=field
            ) from None
        if parsed.tzinfo is None:
            raise ValidationError(NO_OFFSET, field=field)
        ts = parsed.timestamp()
    else:
        raise ValidationError(NOT_TIME, field=field)
    if not math.isfinite(ts) or ts < MIN_TIMESTAMP:
        raise ValidationError(TOO_EARLY, field=field)
    return ts


def check_timestamp(raw: Any, now: float, settings: Settings) -> float:
    timestamp = parse_timestamp(raw)
    if timestamp > now + settings.max_future_seconds:
        raise ValidationError(
            f"is {timestamp - now:.0f} s in the future (limit {settings.max_future_seconds:.0f} s)",
            field="timestamp",
        )
    return timestamp


def check_context_size(size: int, settings: Settings) -> None:
    if size > settings.max_context_bytes:
        raise ValidationError(
            f"is {size} bytes (limit {settings.max_context_bytes})", field="context"
        )


def message_of(check: Callable[[], object], fallback: str) -> str:
    """The message ``check`` raises (a column-wise check names rows with it), or ``fallback``
    when it passes: the column mask and the scalar check disagree only on representation,
    such as a CSV cell the column parser could not read."""
    try:
        check()
    except ValidationError as exc:
        return exc.message
    return fallback


def settle(kept: int, inserted: int) -> tuple[int, int]:
    """``(accepted, duplicates)`` of ``kept`` valid events of which ``inserted`` were new."""
    return inserted, kept - inserted
