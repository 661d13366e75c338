"""GET/POST /v1/recommendations and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from dataflywheel.api.deps import bearer_key, require, send_json, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES
from dataflywheel.errors import FlywheelError, ValidationError

PATH = "/v1/recommendations"
MAX_ID = 256
MAX_K = 200
_INTEGER = re.compile(r"\s*[+-]?\d{1,9}\s*")
router = APIRouter(tags=["recommendations"])
_OPTIONS: dict[str, Any] = {
    "responses": ERROR_RESPONSES,
    "dependencies": [Depends(require("ingest"))],
}


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    propensity: float


class ExperimentRef(BaseModel):
    id: str
    arm: str


class RecommendationOut(BaseModel):
    recommendation_id: str
    model_version: str | None
    policy: str
    experiment: ExperimentRef | None
    items: list[RecommendedItem]


class ItemFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")

    categories: list[str] | None = None
    attributes: dict[str, Any] | None = None


class RecommendationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=MAX_ID)
    k: int | None = Field(None, ge=1, le=MAX_K, description="10; with candidates: all of them")
    context: dict[str, Any] | None = None
    filter: ItemFilter | None = None
    exclude: list[str] = Field(default_factory=list, max_length=10_000)
    exclude_consumed: bool = True
    candidates: list[str] | None = Field(
        default=None, description="Rank only these item ids (at most the setting max_candidates)"
    )


class SimilarItem(BaseModel):
    item_id: str
    score: float


class SimilarOut(BaseModel):
    item_id: str
    model_version: str | None
    items: list[SimilarItem]


async def _recommend(request: Request, body: RecommendationIn) -> dict[str, Any]:
    wheel = wheel_of(request)
    item_filter = body.filter.model_dump(exclude_none=True) if body.filter else None
    if body.candidates is not None:
        candidates = body.candidates
        return await run_in_threadpool(
            lambda: wheel.rank(
                body.user_id,
                candidates,
                body.k,
                context=body.context,
                filter=item_filter,
                exclude=body.exclude,
                exclude_consumed=body.exclude_consumed,
            )
        )
    return await run_in_threadpool(
        lambda: wheel.recommend(
            body.user_id,
            10 if body.k is None else body.k,
            context=body.context,
            filter=item_filter,
            exclude=body.exclude,
            exclude_consumed=body.exclude_consumed,
        )
    )


@router.get("/v1/recommendations", response_model=RecommendationOut, **_OPTIONS)
async def get_recommendations(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=MAX_ID)],
    k: Annotated[int, Query(ge=1, le=MAX_K)] = 10,
) -> dict[str, Any]:
    """Top-k items for a user (consumed items excluded); logged as an impression.

    Served by :func:`answer` ahead of the middleware stack; this route documents it."""
    return await _recommend(request, RecommendationIn(user_id=user_id, k=k))


@router.post("/v1/recommendations", response_model=RecommendationOut, **_OPTIONS)
async def post_recommendations(request: Request, body: RecommendationIn) -> dict[str, Any]:
    """Top-k items with context, category/attribute filters and exclusions."""
    return await _recommend(request, body)


@router.get("/v1/items/{item_id}/similar", response_model=SimilarOut, **_OPTIONS)
async def similar_items(
    request: Request,
    item_id: Annotated[str, Path(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=200)] = 10,
) -> dict[str, Any]:
    """Items most related to ``item_id`` under the champion model."""
    wheel = wheel_of(request)
    return await run_in_threadpool(wheel.similar, item_id, k)


def _query(raw: bytes) -> tuple[str, int]:
    """``user_id`` and ``k`` from a query string, checked as the documented route checks them
    (the last of repeated parameters wins; others are ignored)."""
    params = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
    user_id = params.get("user_id")
    if user_id is None:
        raise ValidationError("user_id: Field required", field="user_id")
    if not 1 <= len(user_id) <= MAX_ID:
        raise ValidationError(f"user_id: must be 1 to {MAX_ID} characters", field="user_id")
    text = params.get("k")
    if text is None:
        return user_id, 10
    if not _INTEGER.fullmatch(text):
        raise ValidationError("k: Input should be a valid integer", field="k")
    k = int(text)
    if not 1 <= k <= MAX_K:
        raise ValidationError(f"k: must be from 1 to {MAX_K}", field="k")
    return user_id, k


async def answer(app: Any, scope: Scope, receive: Receive, send: Send) -> bool:
    """Answer ``GET /v1/recommendations`` without the middleware stack, with the same body,
    errors and request metrics; False, sending nothing, for any other request.

    The answer is computed on the event loop (a few hundred microseconds; a thread hop would
    cost a third of that). A due periodic check of the champion or the catalogue, which may
    load a model, runs first in a worker thread; requests arriving meanwhile are answered by
    the current model without waiting for it.
    """
    if scope["path"] != PATH or scope["method"] != "GET":
        return False
    scope["app"] = app
    state = app.state
    status = 500
    try:
        state.keys.check(bearer_key(Request(scope)), "ingest")
        user_id, k = _query(scope["query_string"])
        wheel = state.wheel
        if not wheel.serving.fresh():
            await run_in_threadpool(wheel.serving.refresh)
        status, payload = 200, orjson.dumps(wheel.recommend(user_id, k))
    except FlywheelError as exc:
        status, payload = exc.status, orjson.dumps(exc.to_dict())
    try:
        await send_json(send, status, payload)
    finally:
        state.metrics.requests.labels(PATH, f"{status // 100}xx").inc()
    return True
