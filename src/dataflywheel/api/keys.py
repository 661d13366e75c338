"""API keys over HTTP (admin): list them without the keys, revoke one by its prefix."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import bearer_key, require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES
from dataflywheel.keys import KeyRing, list_keys, revoke_key

router = APIRouter(tags=["keys"], dependencies=[Depends(require("admin"))])


class KeyOut(BaseModel):
    prefix: str
    scope: str
    status: Literal["active", "expired", "revoked"]
    created_at: float
    last_used_at: float | None
    expires_at: float | None
    revoked_at: float | None


class KeysOut(BaseModel):
    keys: list[KeyOut]


@router.get("/v1/keys", response_model=KeysOut, responses=ERROR_RESPONSES)
async def get_keys(request: Request) -> KeysOut:
    """Every key: prefix, scope, status and times (epoch seconds; last use to the minute)."""
    keys = await run_in_threadpool(list_keys, wheel_of(request).store)
    now = time.time()
    return KeysOut(keys=[KeyOut(**info.to_dict(now)) for info in keys])


@router.delete(
    "/v1/keys/{prefix}",
    status_code=204,
    response_class=Response,
    responses={**ERROR_RESPONSES, 409: ERROR_RESPONSES[422]},
)
async def delete_key(
    request: Request, prefix: Annotated[str, Path(min_length=1, max_length=64)]
) -> Response:
    """Revoke the key with this prefix (as listed) at once; 404 when none is active, 422 when
    the prefix names several keys."""
    ring: KeyRing = request.app.state.keys
    caller = ring.prefix_of(bearer_key(request))
    actor = f"api:{caller}" if caller else "api"
    await run_in_threadpool(
        revoke_key, wheel_of(request).store, prefix, actor=actor, field="prefix"
    )
    ring.invalidate()  # this process refuses the key from the next request on
    return Response(status_code=204)
