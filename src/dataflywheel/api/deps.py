"""Shared request dependencies: the engine handle and API-key checks."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request

from dataflywheel.keys import KeyRing, Scope
from dataflywheel.wheel import Flywheel


def wheel_of(request: Request) -> Flywheel:
    wheel: Flywheel = request.app.state.wheel
    return wheel


def bearer_key(request: Request) -> str | None:
    """The key from ``Authorization: Bearer`` or the Personalizer SDKs' subscription header."""
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("ocp-apim-subscription-key")


def require(scope: Scope) -> Callable[[Request], Coroutine[Any, Any, None]]:
    """A dependency that rejects requests whose key does not grant ``scope``.

    Async so FastAPI runs it on the event loop instead of a thread hop per request; the key
    ring touches the store only every few seconds.
    """

    async def check(request: Request) -> None:
        keys: KeyRing = request.app.state.keys
        keys.check(bearer_key(request), scope)

    return check
