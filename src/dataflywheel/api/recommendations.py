"""GET/POST /v1/recommendations and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES

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

    user_id: str = Field(min_length=1, max_length=256)
    k: int = Field(10, ge=1, le=200)
    context: dict[str, Any] | None = None
    filter: ItemFilter | None = None
    exclude: list[str] = Field(default_factory=list, max_length=10_000)
    exclude_consumed: bool = True


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
    return await run_in_threadpool(
        lambda: wheel.recommend(
            body.user_id,
            body.k,
            context=body.context,
            filter=item_filter,
            exclude=body.exclude,
            exclude_consumed=body.exclude_consumed,
        )
    )


@router.get("/v1/recommendations", response_model=RecommendationOut, **_OPTIONS)
async def get_recommendations(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=200)] = 10,
) -> dict[str, Any]:
    """Top-k items for a user (consumed items excluded); logged as an impression."""
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
