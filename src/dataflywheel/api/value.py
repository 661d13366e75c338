"""``GET /v1/value``: the value of data, answered from the cache kept per store watermark."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of

router = APIRouter(tags=["insight"])


@router.get("/v1/value", dependencies=[Depends(require("admin"))])
async def get_value(
    request: Request,
    refresh: bool = Query(
        False, description="Measure now unless a complete result at this watermark exists."
    ),
    budget: float = Query(120.0, description="Seconds a measure may spend (0 < budget ≤ 86400)."),
) -> Any:
    """Learning curve, next doubling, value by slice, coverage and advice (``cached`` and
    ``stale`` say whether the answer came from the cache and whether data arrived since)."""
    from dataflywheel.learn.value import value_report

    wheel = wheel_of(request)
    return await run_in_threadpool(
        value_report,
        wheel.store,
        wheel.registry,
        wheel.settings.artifacts_dir(),
        refresh=refresh,
        budget=budget,
    )
