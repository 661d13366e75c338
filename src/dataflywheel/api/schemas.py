"""Request and response shapes as they appear in the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventIn(BaseModel):
    """One event (validated by :mod:`dataflywheel.ingest.validate`, documented here)."""

    model_config = ConfigDict(extra="forbid")

    event_id: str | None = Field(None, description="Client-chosen id; retries with it are no-ops")
    user_id: str
    item_id: str | None = None
    type: str = Field(description="An event type configured under [signals]")
    value: float = 1.0
    timestamp: str | float | None = Field(None, description="RFC 3339 or epoch seconds")
    recommendation_id: str | None = None
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
