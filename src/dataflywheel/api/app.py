"""The FastAPI application: routes translate HTTP to the services, errors to one JSON shape."""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dataflywheel import __version__
from dataflywheel.api import (
    entities,
    erasure,
    events,
    fast,
    guard,
    insight,
    keys,
    models,
    personalizer,
    recommendations,
    rollout,
    schemas,
    system,
    value,
)
from dataflywheel.config import Settings, load_settings
from dataflywheel.errors import FlywheelError
from dataflywheel.wheel import compose_server


def _error(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, **details}}, status_code=status
    )


class AppState(State):
    """``app.state`` whose entries are also plain attributes.

    Starlette's ``State`` answers ``state.name`` from ``__getattr__``, that is after a failed
    normal look-up and its exception: about half a microsecond per access, and the fast routes
    make several per request."""

    def __setattr__(self, key: str, value: Any) -> None:
        super().__setattr__(key, value)
        object.__setattr__(self, key, value)

    def __delattr__(self, key: str) -> None:
        super().__delattr__(key)
        object.__delattr__(self, key)


class FlywheelAPI(FastAPI):
    """FastAPI with a table of routes answered ahead of the middleware stack: the busiest
    ones, ``POST /v1/events``, ``GET /v1/recommendations`` and the decision calls
    (Personalizer rank and reward). See :mod:`dataflywheel.api.fast`; every request passes
    :func:`guard.screen` first. Other requests take the full stack.
    """

    fast_routes = fast.FastTable([*events.FAST, *recommendations.FAST, *personalizer.FAST])
    # Off only to compare the fast routes with the same handlers through the full stack.
    fast_routes_enabled = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        try:
            screened = guard.screen(self, scope)
        except FlywheelError as exc:
            await guard.refuse(self, scope, send, exc)
            return
        found = self.fast_routes.find(scope["method"], scope["path"])
        if found is not None and self.fast_routes_enabled:
            await fast.serve(self, found, scope, receive, send, screened)
            return
        if screened.body:
            check = found is None or found[0].checks_body
            try:
                if not screened.open and guard.needs_admin(self, scope):
                    # An ingest key learns nothing of an admin route's body rules.
                    self.state.keys.check(screened.key, "admin")
                receive = await guard.buffered(receive, self.state.wheel.settings, check=check)
            except FlywheelError as exc:
                await guard.refuse(self, scope, send, exc)
                return
            except ClientDisconnect:
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, *, run_loop: bool = False) -> FastAPI:
    """The HTTP API over the store named in ``settings``; ``run_loop`` starts the background
    loop (retraining and promotion) with the server."""
    server = compose_server(settings)  # the same parts as the CLI and the Python API
    wheel, writer, loop = server.wheel, server.writer, server.loop

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if run_loop:
            loop.start()
        # The champion, histories and catalogue are loaded before the first request, and,
        # with everything else alive after start-up (modules, the app, caches), frozen: they
        # live as long as the server, and a full collection that traverses them pauses
        # serving for 100 ms and more (frozen: +10 % decisions/s, no such pauses).
        await run_in_threadpool(wheel.serving.refresh)
        gc.collect()
        gc.freeze()
        yield
        gc.unfreeze()  # an app shut down in a longer-lived process can then be collected
        if run_loop:
            loop.stop()
        writer.close()
        wheel.close()

    app = FlywheelAPI(
        title="dataflywheel",
        version=__version__,
        lifespan=lifespan,
    )
    app.state = AppState()
    app.state.wheel = wheel
    app.state.writer = writer
    app.state.keys = server.keys
    app.state.admin_paths = {}  # guard.needs_admin's answers per method and path
    app.state.metrics = system.Metrics()
    app.router.routes.append(events.route)
    for module in (
        entities,
        erasure,
        recommendations,
        models,
        rollout,
        system,
        personalizer,
        insight,
        keys,
        value,
    ):
        app.include_router(module.router)
    _install_error_handlers(app)
    _install_openapi(app)

    app.add_middleware(RequestCounter, metrics=app.state.metrics)
    return app


class RequestCounter:
    """Counts requests by route and status class; plain ASGI, so it adds no task per request
    (Starlette's ``BaseHTTPMiddleware`` would)."""

    def __init__(self, app: ASGIApp, metrics: system.Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.record_request(path, status)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FlywheelError)
    async def flywheel_error(_: Request, exc: FlywheelError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        error = schemas.invalid(exc.errors())  # as the fast routes report their queries
        return JSONResponse(error.to_dict(), status_code=error.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))


def _install_openapi(app: FastAPI) -> None:
    """Add POST /v1/events, a raw ASGI route that FastAPI does not document by itself."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            events.document(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from FLYWHEEL_* variables."""
    settings = load_settings(db=os.environ.get("FLYWHEEL_DB"))
    return create_app(settings, run_loop=settings.loop_enabled)
