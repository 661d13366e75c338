"""KPIs, the flywheel health verdict, the dashboard page, its data and the HTML report."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, HTMLResponse
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.inspect import experiment_page, item_lookup, user_lookup
from dataflywheel.insight import dashboard_data, health, kpis, render_page, render_report
from dataflywheel.insight.dashboard import plotly_path
from dataflywheel.insight.pages import experiments_page, models_page

router = APIRouter(tags=["insight"])

FromQuery = Query(None, alias="from", description="First day, YYYY-MM-DD (UTC, inclusive).")
ToQuery = Query(None, alias="to", description="Last day, YYYY-MM-DD (UTC, inclusive).")


@router.get("/v1/kpis", dependencies=[Depends(require("admin"))])
async def get_kpis(
    request: Request,
    start: str | None = FromQuery,
    end: str | None = ToQuery,
    grain: str = Query("day", description="day, week or month."),
) -> Any:
    """KPIs per day/week/month: active users, sessions, events, strong signals, quality."""
    return await run_in_threadpool(kpis, wheel_of(request).store, start, end, grain)


@router.get("/v1/health/flywheel", dependencies=[Depends(require("admin"))])
async def get_health(request: Request) -> Any:
    """Is the flywheel spinning? The four conditions with evidence and next actions."""
    return await run_in_threadpool(health, wheel_of(request).store)


@router.get("/v1/dashboard", dependencies=[Depends(require("admin"))])
async def get_dashboard(
    request: Request, start: str | None = FromQuery, end: str | None = ToQuery
) -> Any:
    """Everything the dashboard draws, aggregated server-side."""
    return await run_in_threadpool(dashboard_data, wheel_of(request).store, start, end)


@router.get("/v1/dashboard/models", dependencies=[Depends(require("admin"))])
async def get_dashboard_models(request: Request) -> Any:
    """The models page: registry, quality by version, transitions and the audit log."""
    return await run_in_threadpool(models_page, wheel_of(request).store)


@router.get("/v1/dashboard/experiments", dependencies=[Depends(require("admin"))])
async def get_dashboard_experiments(request: Request) -> Any:
    """The newest experiments for the experiments page."""
    return await run_in_threadpool(experiments_page, wheel_of(request).store)


@router.get("/v1/dashboard/experiments/{experiment_id}", dependencies=[Depends(require("admin"))])
async def get_dashboard_experiment(
    request: Request, experiment_id: Annotated[str, Path(min_length=1, max_length=64)]
) -> Any:
    """An experiment's status (as GET /v1/experiments/{id}) with ``timeline``: the cumulative
    lift of the primary metric and its sequential interval at the end of each day."""
    wheel = wheel_of(request)
    return await run_in_threadpool(experiment_page, wheel, experiment_id, time.time())


@router.get("/v1/dashboard/users/{user_id}", dependencies=[Depends(require("admin"))])
async def get_dashboard_user(
    request: Request,
    user_id: Annotated[str, Path(min_length=1, max_length=256)],
    k: Annotated[int, Query(ge=1, le=200)] = 10,
) -> Any:
    """A user's history, the lists served to them, and the champion's current ranking as an
    admin preview that is not logged as an impression (a lookup is not a visit)."""
    return await run_in_threadpool(user_lookup, wheel_of(request), user_id, k)


@router.get("/v1/dashboard/items/{item_id}", dependencies=[Depends(require("admin"))])
async def get_dashboard_item(
    request: Request, item_id: Annotated[str, Path(min_length=1, max_length=256)]
) -> Any:
    """An item's events by type, first event, first strong signal and similar items."""
    return await run_in_threadpool(item_lookup, wheel_of(request), item_id)


@router.get("/v1/report", response_class=HTMLResponse, dependencies=[Depends(require("admin"))])
async def get_report(
    request: Request, start: str | None = FromQuery, end: str | None = ToQuery
) -> HTMLResponse:
    """The dashboard as one self-contained HTML file (plotly.js and data inlined)."""
    html = await run_in_threadpool(render_report, wheel_of(request).store, start, end)
    return HTMLResponse(html)


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    """The live dashboard; it fetches /v1/dashboard (with the key from ``#key=``)."""
    return HTMLResponse(render_page())


@router.get("/dashboard/plotly.min.js", include_in_schema=False)
async def plotly_js() -> FileResponse:
    """plotly.js from the installed ``plotly`` package, so the page works offline."""
    return FileResponse(
        plotly_path(),
        media_type="text/javascript",
        headers={"Cache-Control": "public, max-age=86400"},
    )
