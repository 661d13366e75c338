"""Event validation: every bad field is named with its reason; valid events pass unchanged."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dataflywheel.config import load_settings
from dataflywheel.errors import ValidationError
from dataflywheel.ingest.validate import EventValidator, parse_timestamp

NOW = 1_750_000_000.0
validator = EventValidator(load_settings(db="sqlite:///:memory:"))


def check(raw: object) -> str | None:
    """The field named by the rejection of ``raw``, or None when it is valid."""
    try:
        validator.validate(raw, NOW)
    except ValidationError as exc:
        return exc.field
    return None


def test_unknown_types_still_fit_the_type_column() -> None:
    open_validator = EventValidator(
        load_settings(db="sqlite:///:memory:").model_copy(update={"accept_unknown_types": True})
    )
    assert open_validator.validate({"user_id": "u", "type": "t" * 64}, NOW).type == "t" * 64
    with pytest.raises(ValidationError) as caught:
        open_validator.validate({"user_id": "u", "type": "t" * 65}, NOW)
    assert caught.value.field == "type"


def test_minimal_event_gets_defaults() -> None:
    event = validator.validate({"user_id": "u1", "type": "click"}, NOW)
    assert event.value == 1.0
    assert event.timestamp == NOW
    assert event.item_id is None
    assert len(event.event_id) == 32


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"type": "click"}, "user_id"),
        ({"user_id": 42, "type": "click"}, "user_id"),
        ({"user_id": "", "type": "click"}, "user_id"),
        ({"user_id": "u", "type": "click", "item_id": 7}, "item_id"),
        ({"user_id": "u", "type": "teleport"}, "type"),
        ({"user_id": "u", "type": "click", "value": math.nan}, "value"),
        ({"user_id": "u", "type": "click", "value": math.inf}, "value"),
        ({"user_id": "u", "type": "click", "value": True}, "value"),
        ({"user_id": "u", "type": "click", "value": "1"}, "value"),
        ({"user_id": "u", "type": "click", "timestamp": NOW + 86_400 * 365}, "timestamp"),
        ({"user_id": "u", "type": "click", "timestamp": "yesterday"}, "timestamp"),
        ({"user_id": "u", "type": "click", "timestamp": "2024-05-01T10:00:00"}, "timestamp"),
        ({"user_id": "u", "type": "click", "timestamp": 12}, "timestamp"),
        ({"user_id": "u", "type": "click", "context": [1, 2]}, "context"),
        ({"user_id": "u", "type": "click", "context": {"x": "y" * 10_000}}, "context"),
        ({"user_id": "u", "type": "click", "userId": "u"}, "userId"),
        ({"user_id": "u" * 300, "type": "click"}, "user_id"),
        ({"user_id": "u", "type": "click", "event_id": "e\x00"}, "event_id"),
        ("not an object", "event"),
    ],
)
def test_bad_fields_are_named(raw: object, field: str) -> None:
    assert check(raw) == field


@given(st.datetimes(min_value=datetime(1991, 1, 1), max_value=datetime(2100, 1, 1)))
def test_rfc3339_and_epoch_agree(moment: datetime) -> None:
    aware = moment.replace(tzinfo=UTC)
    assert parse_timestamp(aware.isoformat()) == pytest.approx(aware.timestamp(), abs=1e-6)
    assert parse_timestamp(aware.isoformat().replace("+00:00", "Z")) == pytest.approx(
        aware.timestamp(), abs=1e-6
    )
    assert parse_timestamp(aware.timestamp()) == aware.timestamp()


@given(st.text(max_size=40))
def test_timestamp_parser_never_crashes(raw: str) -> None:
    try:
        value = parse_timestamp(raw)
    except ValidationError as exc:
        assert exc.field == "timestamp"
    else:
        assert math.isfinite(value)


@given(
    st.dictionaries(
        st.sampled_from(["user_id", "item_id", "type", "value", "timestamp", "context", "x"]),
        st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5), st.booleans()),
    )
)
def test_validator_accepts_or_names_a_field(raw: dict[str, object]) -> None:
    try:
        event = validator.validate(raw, time.time())
    except ValidationError as exc:
        assert exc.field in {"user_id", "item_id", "type", "value", "timestamp", "context", "x"}
    else:
        assert isinstance(event.user_id, str) and event.user_id
        assert math.isfinite(event.value)
