"""One event contract: the same bad event gives the same field and message through an HTTP
batch, a CSV import and ``Flywheel.track``."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import pytest

import dataflywheel as dfw
from dataflywheel.api.app import create_app
from dataflywheel.api.schemas import EventIn
from dataflywheel.config import load_settings
from dataflywheel.errors import ValidationError
from dataflywheel.ingest import contract
from dataflywheel.ingest.importer import EventImporter

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

GOOD: dict[str, Any] = {
    "user_id": "u1",
    "item_id": "i1",
    "type": "click",
    "value": 1.0,
    "timestamp": 1_700_000_000,
}
BAD: list[tuple[dict[str, Any], str]] = [
    ({"type": "nope"}, "type"),
    ({"type": "t" * 70}, "type"),
    ({"user_id": "u\x00"}, "user_id"),
    ({"user_id": "u" * 257}, "user_id"),
    ({"item_id": "i" * 257}, "item_id"),
    ({"value": 1e300}, "value"),
    ({"value": "abc"}, "value"),
    ({"timestamp": "1980-01-01T00:00:00Z"}, "timestamp"),
    ({"timestamp": "yesterday"}, "timestamp"),
    ({"timestamp": "2024-01-01T00:00:00"}, "timestamp"),  # no UTC offset
    ({"user_id": ""}, "user_id"),  # in the CSV: an empty cell
]


@pytest.mark.parametrize(("change", "field"), BAD, ids=[f"{f}-{i}" for i, (_, f) in enumerate(BAD)])
def test_the_same_bad_event_is_reported_alike_everywhere(
    tmp_path: Path, change: dict[str, Any], field: str
) -> None:
    event = {**GOOD, **change}
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with TestClient(create_app(load_settings(db=db))) as client:
        answer = client.post("/v1/events", json={"events": [event]}).json()
    [http] = answer["rejected"]
    assert answer["accepted"] == 0

    path = tmp_path / "events.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(event))
        writer.writeheader()
        writer.writerow(event)
    with dfw.open(db) as wheel:
        imported = EventImporter(wheel.store).run(path)
        with pytest.raises(ValidationError) as tracked:
            wheel.track(**event)
    [row] = imported.errors
    assert imported.accepted == 0

    assert http["field"] == row["field"] == tracked.value.field == field
    assert http["error"] == row["error"] == tracked.value.message


def test_messages_come_from_the_contract() -> None:
    settings = load_settings(db="sqlite://")
    with pytest.raises(ValidationError) as raised:
        contract.check_timestamp(contract.MIN_TIMESTAMP - 1, 0.0, settings)
    assert raised.value.message == contract.TOO_EARLY
    assert contract.settle(5, 3) == (3, 2)


def test_the_openapi_model_is_built_from_the_contract() -> None:
    assert tuple(EventIn.model_fields) == contract.FIELDS
    schema = EventIn.model_json_schema()["properties"]
    assert schema["type"]["maxLength"] == contract.TYPE_MAX_LENGTH
    assert schema["user_id"]["maxLength"] == contract.MAX_ID_LENGTH
    assert schema["value"]["default"] == contract.DEFAULT_VALUE
