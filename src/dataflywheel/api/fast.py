"""The routes answered ahead of the middleware stack, and the one wrapper they all go through.

At thousands of requests/s the stack (error pages, telemetry, routing, dependency solving)
costs more than ingesting an event or taking a decision, so ``POST /v1/events``,
``GET /v1/recommendations`` and the Personalizer rank and reward calls skip it. What the stack
would still add is done here, once, for every such route: the key's scope, the body limit and
checks (as :func:`~dataflywheel.api.guard.buffered` does for the stack), the error body
and the request metrics line. A handler only parses and answers, with the same functions its
documented route uses, so both give the same bytes for the same bad input.

Each module lists its routes (``FAST``); the app builds one :class:`FastTable` of them. A
route without a handler stands for one the full stack answers, listed to keep routing order.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

from dataflywheel.api.deps import send_json
from dataflywheel.api.guard import Screened, check_json, read_body
from dataflywheel.errors import FlywheelError
from dataflywheel.keys import Scope as KeyScope

Answer = tuple[int, bytes]
"""A status and a JSON body (empty for 204)."""
Handler = Callable[[Request, bytes], Awaitable[Answer]]
"""Answers a request given its body, read (bounded and, unless the route says otherwise,
checked) by :func:`serve`: handlers never read it themselves."""
Render = Callable[[FlywheelError], Answer]


def json_error(exc: FlywheelError) -> Answer:
    """The API's error body, as the app's exception handlers render it."""
    return exc.status, orjson.dumps(exc.to_dict())


@dataclass(frozen=True, slots=True)
class FastRoute:
    method: str
    path: str  # the template: the metrics label and, with {parameters}, the pattern
    handler: Handler | None
    key_scope: KeyScope = "ingest"
    render: Render = json_error
    # False for a route that reports bad parts of its body itself (events: per event).
    checks_body: bool = True


class FastTable:
    """(method, path) → route: exact paths by one dict look-up, templates in routing order."""

    def __init__(self, routes: Iterable[FastRoute]) -> None:
        self._exact: dict[tuple[str, str], FastRoute] = {}
        self._patterns: dict[str, list[tuple[re.Pattern[str], FastRoute]]] = {}
        for route in routes:
            if "{" in route.path:
                pattern = compile_path(route.path)[0]
                self._patterns.setdefault(route.method, []).append((pattern, route))
            else:
                self._exact.setdefault((route.method, route.path), route)

    def find(self, method: str, path: str) -> tuple[FastRoute, dict[str, str]] | None:
        """The route and its path parameters; None for the full stack."""
        route = self._exact.get((method, path))
        if route is not None:
            return (route, {}) if route.handler is not None else None
        for pattern, candidate in self._patterns.get(method, ()):
            found = pattern.match(path)
            if found is not None:
                return (candidate, found.groupdict()) if candidate.handler is not None else None
        return None


async def serve(
    app: Any,
    found: tuple[FastRoute, dict[str, str]],
    scope: Scope,
    receive: Receive,
    send: Send,
    screened: Screened,
) -> None:
    """Answer a request with its fast route: scope check, body, handler, error body, metrics."""
    route, params = found
    handler = route.handler
    assert handler is not None
    scope["app"] = app
    scope["path_params"] = params
    state = app.state
    status = 500
    try:
        try:
            if not screened.open:
                state.keys.check(screened.key, route.key_scope)
            body = b""
            if screened.body:
                settings = state.wheel.settings
                body = await read_body(receive, settings.max_body_bytes)
                if route.checks_body:
                    check_json(body, settings)
            status, payload = await handler(Request(scope, receive), body)
        except FlywheelError as exc:
            status, payload = route.render(exc)
        if payload:
            await send_json(send, status, payload)
        else:
            headers = [(b"content-length", b"0")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
    except ClientDisconnect:
        status = 499  # the client left; nothing to answer
    finally:
        state.metrics.record_request(route.path, status)
