"""Stats, liveness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest
from starlette.concurrency import run_in_threadpool

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES, StatsOut
from dataflywheel.ingest.service import IngestResult

router = APIRouter(tags=["system"])


class Metrics:
    """This process's counters, exported at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "flywheel_events",
            "Events received, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.requests = Counter(
            "flywheel_http_requests",
            "HTTP requests, by route and status class",
            ["route", "status"],
            registry=self.registry,
        )

        # Children looked up once: labels() takes a lock and formats its values on every call,
        # which costs as much as the rest of counting on the busiest routes.
        self._outcomes = {o: self.events.labels(o) for o in ("accepted", "duplicate", "rejected")}
        self._routes: dict[tuple[str, int], Any] = {}

    def record_ingest(self, result: IngestResult) -> None:
        for outcome, count in (
            ("accepted", result.accepted),
            ("duplicate", result.duplicates),
            ("rejected", len(result.rejected)),
        ):
            if count:
                self._outcomes[outcome].inc(count)

    def record_request(self, route: str, status: int) -> None:
        """One answered request, under its route's template and its status class."""
        key = (route, status // 100)
        child = self._routes.get(key)
        if child is None:
            child = self._routes[key] = self.requests.labels(route, f"{key[1]}xx")
        child.inc()


@router.get(
    "/v1/stats",
    response_model=StatsOut,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require("ingest"))],
)
async def stats(request: Request) -> Any:
    """Counts of what the store holds."""
    return await run_in_threadpool(wheel_of(request).stats)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """Liveness: the process answers."""
    return {"status": "ok"}


@router.get("/metrics", response_class=Response, dependencies=[Depends(require("admin"))])
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    registry = request.app.state.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
