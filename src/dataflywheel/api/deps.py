"""Shared request dependencies: the engine handle and API-key checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from starlette.types import Send

from dataflywheel.keys import KeyRing, Scope
from dataflywheel.wheel import Flywheel


def wheel_of(request: Request) -> Flywheel:
    wheel: Flywheel = request.app.state.wheel
    return wheel


def bearer_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer`` or the Personalizer SDKs' subscription header.

    One pass over the raw headers: this runs on every request, and Starlette's header mapping
    scans them once per lookup.
    """
    authorization = subscription = None
    for name, value in request.scope["headers"]:
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"ocp-apim-subscription-key" and subscription is None:
            subscription = value.decode("latin-1")
    if authorization is not None and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return subscription


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that rejects requests whose key does not grant ``scope``.

    Async so FastAPI runs it on the event loop instead of a thread hop per request; the key
    ring touches the store only every few seconds.
    """

    async def check(request: Request) -> None:
        keys: KeyRing = request.app.state.keys
        keys.check(bearer_key(request), scope)

    if scope == "admin":
        ADMIN_CHECKS.add(check)
    return check


ADMIN_CHECKS: set[Callable[..., Any]] = set()
"""The dependencies :func:`require` made for admin routes: the guard looks for them to refuse
an ingest key before a route reads its body."""


async def send_json(send: Send, status: int, payload: bytes) -> None:
    """A complete JSON response through a raw ASGI ``send`` (the routes answered ahead of the
    middleware stack)."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
