"""Validation of incoming events: each problem names the field and the reason.

Hand-written rather than a pydantic model per event because it is the ingestion hot path
(100 000 events/s) and a bad event must be reported without rejecting its valid neighbours.
The rules and messages themselves live in :mod:`~dataflywheel.ingest.contract`.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

import msgspec
import orjson

from dataflywheel.config import Settings
from dataflywheel.errors import ValidationError
from dataflywheel.ingest import contract
from dataflywheel.ingest.contract import MIN_TIMESTAMP as MIN_TIMESTAMP
from dataflywheel.ingest.contract import TYPE_MAX_LENGTH as TYPE_MAX_LENGTH
from dataflywheel.ingest.contract import parse_timestamp as parse_timestamp

FIELDS = frozenset(contract.FIELDS)


class Event(msgspec.Struct, frozen=True, gc=False):
    """A validated event, ready to be stored (a C struct: the fast path builds one per event)."""

    event_id: str
    user_id: str
    item_id: str | None
    type: str
    value: float
    timestamp: float
    recommendation_id: str | None
    context: str | None


def new_event_id(now: float) -> str:
    """A time-ordered id (like UUIDv7): appends to the dedup index instead of scattering."""
    return f"{int(now * 1_000_000):014x}{os.urandom(9).hex()}"


class EventValidator:
    """Checks raw event objects against the settings (types, limits, clock skew)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def _string(self, raw: dict[str, Any], field: str, *, required: bool) -> str | None:
        value = raw.get(field)
        if value is None:
            if required:
                raise ValidationError(contract.IS_REQUIRED, field=field)
            return None
        return contract.check_id(value, field, self.settings.max_id_length)

    def check_type(self, event_type: str) -> None:
        contract.check_type(event_type, self.settings)

    def check_value(self, value: float, event_type: str) -> None:
        contract.check_value(value, event_type, self.settings)

    def common_value_bound(self) -> tuple[float, float]:
        return contract.common_value_bound(self.settings)

    def check_timestamp(self, raw: Any, now: float) -> float:
        return contract.check_timestamp(raw, now, self.settings)

    def check_context_size(self, size: int) -> None:
        contract.check_context_size(size, self.settings)

    def check_context_depth(self, raw: bytes) -> None:
        check_depth(raw, self.settings.max_json_depth, field="context")

    def validate(self, raw: Any, now: float) -> Event:
        """One event or a ValidationError naming the first wrong field."""
        if not isinstance(raw, dict):
            raise ValidationError("each event must be a JSON object", field="event")
        unknown = raw.keys() - FIELDS
        if unknown:
            raise ValidationError("unknown field", field=sorted(unknown)[0])
        user_id = self._string(raw, "user_id", required=True)
        item_id = self._string(raw, "item_id", required=False)
        event_type = self._string(raw, "type", required=True)
        assert user_id is not None and event_type is not None
        self.check_type(event_type)
        value = contract.check_value(
            raw.get("value", contract.DEFAULT_VALUE), event_type, self.settings
        )
        timestamp = now
        if raw.get("timestamp") is not None:
            timestamp = self.check_timestamp(raw["timestamp"], now)
        recommendation_id = self._string(raw, "recommendation_id", required=False)
        context = raw.get("context")
        context_json: str | None = None
        if context is not None:
            if not isinstance(context, dict):
                raise ValidationError(contract.NOT_OBJECT, field="context")
            try:
                encoded = orjson.dumps(context)
            except TypeError as exc:
                raise ValidationError(f"is not encodable: {exc}", field="context") from None
            self.check_context_size(len(encoded))
            self.check_context_depth(encoded)
            context_json = encoded.decode()
        event_id = self._string(raw, "event_id", required=False) or new_event_id(now)
        return Event(
            event_id=event_id,
            user_id=user_id,
            item_id=item_id,
            type=event_type,
            value=value,
            timestamp=timestamp,
            recommendation_id=recommendation_id,
            context=context_json,
        )


class TooDeep(ValidationError):
    """JSON nested deeper than ``max_json_depth``: consumers of it recurse."""

    code = "too_deep"
    status = 400


# JSON text reduced to what nesting depends on: quotes, escapes and brackets, with ``[]`` read
# as ``{}`` (in valid JSON both nest alike, so one pair to remove per pass).
_BRACES = bytes.maketrans(b"[]", b"{}")
_STRUCTURE = bytes(b for b in range(256) if b not in b'"\\[]{}')
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')


def too_deep(raw: bytes, limit: int) -> bool:
    """Whether objects and arrays nest more than ``limit`` levels in the JSON text ``raw``.

    C-speed byte operations, no parse: bytes.translate keeps the structure, and each pass
    removes the innermost ``{}`` pairs. Strings are dropped first; the regex that can read
    escapes runs only when some string holds a quote, backslash or bracket.
    """
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    skeleton = raw.translate(_BRACES, _STRUCTURE).replace(b'""', b"")
    if b'"' in skeleton or b"\\" in skeleton:
        skeleton = _STRING.sub(b"", raw).translate(_BRACES, _STRUCTURE)
    for _ in range(limit):
        shorter = skeleton.replace(b"{}", b"")
        if len(shorter) == len(skeleton):
            return False  # empty, or unbalanced: not JSON, which the parser reports
        skeleton = shorter
    return bool(skeleton)


def check_depth(raw: bytes, limit: int, field: str = "body") -> None:
    """Refuse JSON text nested deeper than ``limit`` (recursive code downstream would fail)."""
    if too_deep(raw, limit):
        raise TooDeep(f"nests objects/arrays more than {limit} levels deep", field=field)


def nul_field(document: Any) -> str | None:
    """The dotted path (``items.0.id``) of a string, key or value, holding a NUL character,
    or None. PostgreSQL text cannot store NUL; both stores refuse it alike."""
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                return path or "body"
        elif isinstance(value, dict):
            for key, child in value.items():
                child_path = f"{path}.{key}" if path else str(key)
                if "\x00" in key:
                    return child_path
                stack.append((child_path, child))
        elif isinstance(value, list):
            stack.extend((f"{path}.{i}" if path else str(i), v) for i, v in enumerate(value))
    return None


def utc_day(ts: float) -> str:
    """The UTC date of an epoch time, as the ingest counters are keyed (``YYYY-MM-DD``)."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
