"""Model versions: list, train, promote, roll back."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES

router = APIRouter(tags=["models"])
_ADMIN: dict[str, Any] = {
    "responses": {**ERROR_RESPONSES, 409: ERROR_RESPONSES[422]},
    "dependencies": [Depends(require("admin"))],
}


class ModelOut(BaseModel):
    version: str
    name: str
    status: str
    params: dict[str, Any]
    metrics: dict[str, Any]
    snapshot_id: str
    created_at: float
    promoted_at: float | None
    fit_seconds: float


class ModelsOut(BaseModel):
    models: list[ModelOut]


class TrainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model: str = "auto"
    budget: float = Field(60.0, gt=0, le=86_400)


class ReasonIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field("manual", max_length=500)


Version = Annotated[str, Path(min_length=1, max_length=64)]


@router.get("/v1/models", response_model=ModelsOut, **_ADMIN)
async def list_models(request: Request) -> dict[str, Any]:
    """Every registered version with its status, parameters and holdout metrics."""
    return {"models": await run_in_threadpool(wheel_of(request).models)}


@router.post("/v1/models/train", response_model=ModelOut, **_ADMIN)
async def train_model(request: Request, body: TrainIn) -> dict[str, Any]:
    """Train and register a candidate now (the first model becomes champion)."""
    wheel = wheel_of(request)
    return await run_in_threadpool(lambda: wheel.train(body.model, body.budget))


@router.post("/v1/models/{version}/promote", response_model=ModelOut, **_ADMIN)
async def promote_model(
    request: Request, version: Version, body: ReasonIn | None = None
) -> dict[str, Any]:
    """Make ``version`` the champion; the previous one is retired (and kept for rollback)."""
    reason = body.reason if body else "manual promotion"
    return await run_in_threadpool(wheel_of(request).promote, version, reason)


@router.post("/v1/models/rollback", response_model=ModelOut, **_ADMIN)
async def rollback_model(request: Request, body: ReasonIn | None = None) -> dict[str, Any]:
    """Restore the previous champion."""
    reason = body.reason if body else "manual rollback"
    return await run_in_threadpool(wheel_of(request).rollback, reason)
