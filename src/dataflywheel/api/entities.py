"""Users and items: upsert one (PUT), upsert many (POST), read one (GET)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES, EntityIn, EntityOut, EntityWithId, UpsertOut
from dataflywheel.config import Settings
from dataflywheel.errors import NotFoundError, ValidationError
from dataflywheel.ingest.validate import parse_timestamp
from dataflywheel.store.store import Kind

router = APIRouter()


class ItemBatch(BaseModel):
    items: list[EntityWithId] = Field(min_length=1, max_length=10_000)


class UserBatch(BaseModel):
    users: list[EntityWithId] = Field(min_length=1, max_length=10_000)


def entity_record(
    key: str, body: EntityIn, settings: Settings, position: str = ""
) -> dict[str, Any]:
    """The store record for ``body``: only the fields the client sent, within the limits."""
    record: dict[str, Any] = {"id": key}
    for name in body.model_fields_set:
        value = getattr(body, name)
        if name == "id":
            continue
        if name == "created_at" and value is not None:
            value = parse_timestamp(value, field=f"{position}created_at")
        if value is None and name in ("hidden", "created_at"):
            raise ValidationError("must not be null", field=f"{position}{name}")
        if name == "attributes" and value is not None:
            _check_attributes(value, settings, f"{position}attributes")
        if name == "categories" and value is not None:
            _check_categories(value, settings, f"{position}categories")
        record[name] = value
    return record


def _check_attributes(attributes: dict[str, Any], settings: Settings, field: str) -> None:
    if len(attributes) > settings.max_attributes:
        raise ValidationError(
            f"{field}: {len(attributes)} attributes (limit {settings.max_attributes})",
            field=field,
        )
    for name in attributes:
        if not 1 <= len(name) <= settings.max_id_length:
            raise ValidationError(
                f"{field}: names must be 1 to {settings.max_id_length} characters",
                field=f"{field}.{name[:40]}",
            )
    size = len(orjson.dumps(attributes))
    if size > settings.max_attributes_bytes:
        raise ValidationError(
            f"{field}: {size} bytes of JSON (limit {settings.max_attributes_bytes})", field=field
        )


def _check_categories(categories: list[str], settings: Settings, field: str) -> None:
    if len(categories) > settings.max_categories:
        raise ValidationError(
            f"{field}: {len(categories)} categories (limit {settings.max_categories})",
            field=field,
        )
    for i, category in enumerate(categories):
        if not 1 <= len(category) <= settings.max_id_length:
            raise ValidationError(
                f"{field}: each must be 1 to {settings.max_id_length} characters",
                field=f"{field}.{i}",
            )


async def _upsert(request: Request, kind: Kind, records: list[dict[str, Any]]) -> UpsertOut:
    wheel = wheel_of(request)
    upsert = wheel.upsert_items if kind == "items" else wheel.upsert_users
    count = await run_in_threadpool(upsert, records)
    return UpsertOut(upserted=count)


async def _get(request: Request, kind: Kind, key: str) -> dict[str, Any]:
    found = await run_in_threadpool(wheel_of(request).store.get_entity, kind, key)
    if found is None:
        raise NotFoundError(f"unknown {kind[:-1]} {key!r}", field=f"{kind[:-1]}_id")
    return found


_OPTIONS: dict[str, Any] = {
    "responses": ERROR_RESPONSES,
    "dependencies": [Depends(require("ingest"))],
}


@router.put("/v1/items/{item_id}", response_model=UpsertOut, tags=["items"], **_OPTIONS)
async def put_item(
    request: Request, body: EntityIn, item_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> UpsertOut:
    """Insert or update one item; only the fields sent change."""
    return await _upsert(
        request, "items", [entity_record(item_id, body, wheel_of(request).settings)]
    )


@router.post("/v1/items", response_model=UpsertOut, tags=["items"], **_OPTIONS)
async def post_items(request: Request, body: ItemBatch) -> UpsertOut:
    """Insert or update up to 10 000 items."""
    settings = wheel_of(request).settings
    records = [entity_record(e.id, e, settings, f"items.{i}.") for i, e in enumerate(body.items)]
    return await _upsert(request, "items", records)


@router.get("/v1/items/{item_id}", response_model=EntityOut, tags=["items"], **_OPTIONS)
async def get_item(
    request: Request, item_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> dict[str, Any]:
    return await _get(request, "items", item_id)


@router.put("/v1/users/{user_id}", response_model=UpsertOut, tags=["users"], **_OPTIONS)
async def put_user(
    request: Request, body: EntityIn, user_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> UpsertOut:
    """Insert or update one user; only the fields sent change."""
    return await _upsert(
        request, "users", [entity_record(user_id, body, wheel_of(request).settings)]
    )


@router.post("/v1/users", response_model=UpsertOut, tags=["users"], **_OPTIONS)
async def post_users(request: Request, body: UserBatch) -> UpsertOut:
    """Insert or update up to 10 000 users."""
    settings = wheel_of(request).settings
    records = [entity_record(e.id, e, settings, f"users.{i}.") for i, e in enumerate(body.users)]
    return await _upsert(request, "users", records)


@router.get("/v1/users/{user_id}", response_model=EntityOut, tags=["users"], **_OPTIONS)
async def get_user(
    request: Request, user_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> dict[str, Any]:
    return await _get(request, "users", user_id)
