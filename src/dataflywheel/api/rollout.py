"""Experiments, triggers and the label queue over HTTP (thin: the services do the work)."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES
from dataflywheel.experiments.report import experiment_status

router = APIRouter()
_ADMIN: dict[str, Any] = {
    "responses": {**ERROR_RESPONSES, 409: ERROR_RESPONSES[422]},
    "dependencies": [Depends(require("admin"))],
}
ExperimentId = Annotated[str, Path(min_length=1, max_length=64)]
JsonObject = Annotated[dict[str, Any], Body()]


@router.post("/v1/experiments", tags=["experiments"], **_ADMIN)
async def create_experiment(request: Request, spec: JsonObject) -> dict[str, Any]:
    """Start an experiment: ``{"name", "type": "ab"|"interleaving", "arms": [{"name",
    "model_version" or "policy", "weight"}], "metric", "guardrails", "min_sample_size"}``."""
    rollout = wheel_of(request).loop.rollout
    return await run_in_threadpool(rollout.experiments.create, spec)


@router.get("/v1/experiments/{experiment_id}", tags=["experiments"], **_ADMIN)
async def get_experiment(request: Request, experiment_id: ExperimentId) -> dict[str, Any]:
    """Status with per-arm metrics, the analysis (sequential, CUPED, SRM) and the decision."""
    wheel = wheel_of(request)
    rollout = wheel.loop.rollout

    def status() -> dict[str, Any]:
        wheel.flush()
        experiment = rollout.experiments.get(experiment_id)
        return experiment_status(wheel.store, experiment, rollout.config, time.time())

    return await run_in_threadpool(status)


@router.post("/v1/experiments/{experiment_id}/stop", tags=["experiments"], **_ADMIN)
async def stop_experiment(request: Request, experiment_id: ExperimentId) -> dict[str, Any]:
    """Stop a running experiment; versions under test go back to candidate."""
    rollout = wheel_of(request).loop.rollout
    return await run_in_threadpool(rollout.experiments.finish, experiment_id, "stopped by API")


@router.post("/v1/triggers", tags=["labels"], **_ADMIN)
async def create_trigger(request: Request, spec: JsonObject) -> dict[str, Any]:
    """A declarative rule that sends matching cases to the label queue (no eval)."""
    queue = wheel_of(request).loop.rollout.queue
    return await run_in_threadpool(queue.add_trigger, spec)


@router.get("/v1/labels/queue", tags=["labels"], **_ADMIN)
async def label_queue(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    task: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    """Pending cases, highest priority first."""
    queue = wheel_of(request).loop.rollout.queue
    return {"cases": await run_in_threadpool(queue.pending, limit, task)}


@router.post("/v1/labels", tags=["labels"], **_ADMIN)
async def post_labels(
    request: Request, labels: Annotated[list[dict[str, Any]], Body(embed=True)]
) -> dict[str, Any]:
    """Answers for queued cases (``{"id", "value", "correction"?, "suite"?}``); they enter the
    next snapshot as strong ``label`` events."""
    rollout = wheel_of(request).loop.rollout
    return await run_in_threadpool(rollout.labels.submit, labels)
