"""Erasure: ``DELETE /v1/users/{user_id}`` and ``DELETE /v1/items/{item_id}`` (admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import bearer_key, require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES
from dataflywheel.loop.erasure import erase
from dataflywheel.store.store import Kind

router = APIRouter()
_ADMIN: dict[str, Any] = {
    "status_code": 204,
    "response_class": Response,
    "responses": ERROR_RESPONSES,
    "dependencies": [Depends(require("admin"))],
}
ACTOR_PREFIX = 8
"""Characters of the caller's key kept in the audit log (the prefix `flywheel keys list` shows
starts with them); never the whole key."""


def actor_of(request: Request) -> str:
    key = bearer_key(request)
    return key[:ACTOR_PREFIX] if key else "anonymous"


def _erase(request: Request, kind: Kind, key: str) -> None:
    wheel = wheel_of(request)
    wheel.flush()  # impressions logged before the erasure are stored, so they are erased too
    erase(wheel.store, kind, key, actor=actor_of(request))
    wheel.serving.forget_deleted()


@router.delete("/v1/users/{user_id}", tags=["users"], **_ADMIN)
async def delete_user(
    request: Request, user_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> Response:
    """Erase a user: their events, impressions, linked decisions, labels and rollup rows; the
    next recommendation for them is a cold start. Audited without the id."""
    await run_in_threadpool(_erase, request, "users", user_id)
    return Response(status_code=204)


@router.delete("/v1/items/{item_id}", tags=["items"], **_ADMIN)
async def delete_item(
    request: Request, item_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> Response:
    """Erase an item: its events, labels and rollup rows; no list serves it from now on.
    Audited without the id."""
    await run_in_threadpool(_erase, request, "items", item_id)
    return Response(status_code=204)
