"""GET/POST /v1/recommendations and GET /v1/items/{item_id}/similar."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qsl

import orjson
import pydantic
from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.fast import Answer, FastRoute
from dataflywheel.api.schemas import ERROR_RESPONSES, invalid

PATH = "/v1/recommendations"
MAX_ID = 256
MAX_K = 200
UserId = Annotated[str, Field(min_length=1, max_length=MAX_ID)]
K = Annotated[int, Field(ge=1, le=MAX_K)]
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


class RecommendationQuery(BaseModel):
    """The query of ``GET /v1/recommendations`` (other parameters are ignored)."""

    user_id: UserId
    k: K = 10


class RecommendationIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: UserId
    k: K | None = Field(None, description="10; with candidates: all of them")
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


def query_of(raw: bytes) -> RecommendationQuery:
    """The checked query of ``GET /v1/recommendations`` (of repeated parameters, the last)."""
    try:
        params = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
        return RecommendationQuery.model_validate(dict(params))
    except pydantic.ValidationError as exc:
        raise invalid(exc.errors()) from None


async def _query(request: Request) -> RecommendationQuery:
    return query_of(request.scope["query_string"])


def _query_parameters() -> list[dict[str, Any]]:
    """The query model as OpenAPI parameters (FastAPI does not document a dependency's)."""
    schema = RecommendationQuery.model_json_schema()
    return [
        {
            "name": name,
            "in": "query",
            "required": name in schema.get("required", ()),
            "schema": spec,
        }
        for name, spec in schema["properties"].items()
    ]


@router.get(
    PATH,
    response_model=RecommendationOut,
    openapi_extra={"parameters": _query_parameters()},
    **_OPTIONS,
)
async def get_recommendations(
    request: Request, query: Annotated[RecommendationQuery, Depends(_query)]
) -> dict[str, Any]:
    """Top-k items for a user (consumed items excluded); logged as an impression.

    Answered from the app's fast table by :func:`fast_recommendations`; this route documents
    it and serves it when the table is off."""
    return await _recommend(request, RecommendationIn(user_id=query.user_id, k=query.k))


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


async def fast_recommendations(request: Request, _body: bytes) -> Answer:
    """``GET /v1/recommendations`` ahead of the middleware stack.

    The answer is computed on the event loop (a few hundred microseconds; a thread hop would
    cost a third of that). A due periodic check of the champion or the catalogue, which may
    load a model, runs first in a worker thread; requests arriving meanwhile are answered by
    the current model without waiting for it.
    """
    query = query_of(request.scope["query_string"])
    wheel = wheel_of(request)
    if not wheel.serving.fresh():
        await run_in_threadpool(wheel.serving.refresh)
    return 200, orjson.dumps(wheel.recommend(query.user_id, query.k))


FAST = (FastRoute("GET", PATH, fast_recommendations),)
