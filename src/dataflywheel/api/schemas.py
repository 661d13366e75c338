"""Request and response shapes as they appear in the OpenAPI document."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from dataflywheel.errors import ValidationError
from dataflywheel.ingest import contract

_Id = Annotated[str, Field(min_length=1, max_length=contract.MAX_ID_LENGTH)]


class EventIn(BaseModel):
    """One event, documented from :mod:`dataflywheel.ingest.contract` (which checks it)."""

    model_config = ConfigDict(extra="forbid")

    event_id: _Id | None = Field(None, description=contract.DESCRIPTIONS["event_id"])
    user_id: _Id
    item_id: _Id | None = None
    type: Annotated[str, Field(min_length=1, max_length=contract.TYPE_MAX_LENGTH)] = Field(
        description=contract.DESCRIPTIONS["type"]
    )
    value: float = Field(contract.DEFAULT_VALUE, description=contract.DESCRIPTIONS["value"])
    timestamp: str | Annotated[float, Field(ge=contract.MIN_TIMESTAMP)] | None = Field(
        None, description=contract.DESCRIPTIONS["timestamp"]
    )
    recommendation_id: _Id | None = None
    context: dict[str, Any] | None = None


class EventBatch(BaseModel):
    events: list[EventIn] = Field(min_length=1, max_length=10_000)


class Rejection(BaseModel):
    index: int
    field: str | None
    error: str


class IngestOut(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejection]


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class EntityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attributes: dict[str, Any] | None = None
    categories: list[str] | None = None
    hidden: bool | None = None
    created_at: str | float | None = None


class EntityWithId(EntityIn):
    id: str = Field(min_length=1, max_length=256)


class EntityOut(BaseModel):
    id: str
    attributes: dict[str, Any]
    categories: list[str]
    hidden: bool
    created_at: float


class UpsertOut(BaseModel):
    upserted: int


class StatsOut(BaseModel):
    events: int
    events_by_type: dict[str, int]
    users: int
    items: int
    impressions: int
    models: int


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "Malformed request"},
    401: {"model": ErrorOut, "description": "Missing or unknown API key"},
    403: {"model": ErrorOut, "description": "The key's scope does not allow this call"},
    404: {"model": ErrorOut, "description": "Not found"},
    413: {"model": ErrorOut, "description": "Request too large"},
    422: {"model": ErrorOut, "description": "Invalid input"},
}


def invalid(errors: Sequence[Mapping[str, Any]]) -> ValidationError:
    """The first of pydantic's errors as the API reports bad input (``field: reason``): for
    request bodies (the app's handler) and for the query models of the fast routes alike."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(p) for p in first["loc"] if p != "body") or "body"
    return ValidationError(f"{field}: {first['msg']}", field=field)
