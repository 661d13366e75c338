"""What every HTTP request must pass before it is routed: host, origin, key, size, media type
and NUL characters, so that no route parses a body it would refuse.

Runs ahead of the busiest routes too, so the common request costs one pass over its headers
and a few comparisons; anything more (locating a NUL, reading a body) happens only for the
requests that need it.

Without API keys the API is open to whoever reaches it, which on a loopback bind means this
machine's processes, unless a web page gets the browser to call it: by DNS rebinding (a name
of the attacker's resolving to 127.0.0.1, seen here as a foreign ``Host``) or by a cross-site
request (a foreign ``Origin``, or a "simple" request whose body is not ``application/json``).
Those are refused. With keys, every request carries one, which a browser cannot send to
another site by itself.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.requests import ClientDisconnect
from starlette.routing import BaseRoute
from starlette.types import Message, Receive, Scope, Send

from dataflywheel.api.deps import ADMIN_CHECKS, send_json
from dataflywheel.errors import FlywheelError, ValidationError
from dataflywheel.ingest.validate import check_depth, nul_field

if TYPE_CHECKING:
    from dataflywheel.config import Settings
    from dataflywheel.keys import KeyRing

_JSON = b"application/json"
_ADMIN_PATHS_KEPT = 4096  # paths carry ids: bounded, as a client picks them


class PayloadTooLarge(FlywheelError):
    code = "too_large"
    status = 413


class UnsupportedMediaType(FlywheelError):
    code = "unsupported_media_type"
    status = 415


class HostNotAllowed(FlywheelError):
    code = "host_not_allowed"
    status = 421


class CrossOrigin(FlywheelError):
    code = "cross_origin"
    status = 403


def nul_error(field: str) -> ValidationError:
    return ValidationError(f"{field}: must not contain NUL characters", field=field)


@lru_cache(maxsize=512)
def host_name(header: str) -> str:
    """The host of a ``Host`` header or an origin's netloc, without port or brackets."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return (header.rpartition(":")[0] if header.count(":") == 1 else header).lower()


@lru_cache(maxsize=512)
def is_loopback(name: str) -> bool:
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _host_allowed(name: str, scope: Scope, settings: Settings) -> bool:
    """Loopback names, the address this connection reached (the bound host), or a configured
    name. A rebinding page's ``Host`` is its own DNS name, which is none of these."""
    server = scope.get("server")
    return (
        is_loopback(name)
        or (server is not None and name == str(server[0]).lower())
        or name in settings.allowed_hosts
    )


def _check_open(scope: Scope, settings: Settings, host: bytes | None, origin: bytes | None) -> None:
    """The checks that stand in for a key when none exists."""
    if host is not None:
        name = host_name(host.decode("latin-1"))
        if not _host_allowed(name, scope, settings):
            raise HostNotAllowed(
                f"Host {name!r} is not served without API keys (only loopback names and "
                "allowed_hosts are); create a key or add the name to allowed_hosts",
                field="host",
            )
    if origin is not None:
        netloc = urlsplit(origin.decode("latin-1")).netloc
        if not netloc or not _host_allowed(host_name(netloc), scope, settings):
            raise CrossOrigin(
                f"requests from origin {origin.decode('latin-1')!r} are refused without API keys",
                field="origin",
            )


def _routes(routes: Iterable[BaseRoute]) -> Iterator[BaseRoute]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # FastAPI includes routers lazily
        if inner is not None:
            yield from _routes(inner.routes)
        else:
            yield route


def route_of(app: Any, scope: Scope) -> tuple[str, dict[str, str]] | None:
    """The path template and path parameters of the route a request is meant for (only for
    refused requests: this walks the routes)."""
    partial = None
    for route in _routes(app.router.routes):
        regex = getattr(route, "path_regex", None)
        found = regex.match(scope["path"]) if regex is not None else None
        if found is not None:
            hit = (getattr(route, "path", ""), found.groupdict())
            if scope["method"] in (getattr(route, "methods", None) or ()):
                return hit
            partial = partial or hit
    return partial


def needs_admin(app: Any, scope: Scope) -> bool:
    """Whether the route a request is meant for takes only admin keys (a walk of the routes;
    the app keeps the answers per method and path)."""
    known: dict[tuple[str, str], bool] = app.state.admin_paths
    at = (scope["method"], scope["path"])
    found = known.get(at)
    if found is None:
        found = False
        for route in _routes(app.router.routes):
            regex, dependant = getattr(route, "path_regex", None), getattr(route, "dependant", None)
            if (
                regex is not None
                and dependant is not None
                and scope["method"] in (getattr(route, "methods", None) or ())
                and regex.match(scope["path"])
            ):
                found = any(d.call in ADMIN_CHECKS for d in dependant.dependencies)
                break
        if len(known) >= _ADMIN_PATHS_KEPT:
            known.clear()
        known[at] = found
    return found


def _nul_in_url(app: Any, scope: Scope) -> ValidationError:
    """The error naming the path parameter or query parameter that holds a NUL character."""
    if "\x00" in scope["path"]:
        _, params = route_of(app, scope) or ("", {})
        return nul_error(next((k for k, v in params.items() if "\x00" in v), "path"))
    query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
    return nul_error(next((k for k, v in query if "\x00" in k + v), "query"))


class Screened(NamedTuple):
    """What :func:`screen` let through: whether a body follows, whether the API is open (no key
    exists), and the key the request carries (to check against its route's scope)."""

    body: bool
    open: bool
    key: str | None


def screen(app: Any, scope: Scope) -> Screened:
    """Raise the error a request gets before routing.

    Order: the host and origin (without keys), NUL characters in the URL, then for a request
    with a body: the key (401 before a byte of the body is read), the declared size (413),
    and the media type (415)."""
    state = app.state
    keys: KeyRing = state.keys
    settings: Settings = state.wheel.settings
    # One C-level pass; a repeated header counts by its last value.
    headers: dict[bytes, bytes] = dict(scope["headers"])
    get = headers.get
    key = _bearer(get(b"authorization"), get(b"ocp-apim-subscription-key"))
    open_api = not keys.any_keys()
    if open_api:
        _check_open(scope, settings, get(b"host"), get(b"origin"))
    if "\x00" in scope["path"] or b"%00" in scope["query_string"]:
        raise _nul_in_url(app, scope)
    length = get(b"content-length")
    if get(b"transfer-encoding") is None and (length is None or length == b"0"):
        return Screened(False, open_api, key)
    if not open_api:
        keys.check(key, "ingest")
    limit = settings.max_body_bytes
    if length is not None and length.isdigit() and int(length) > limit:
        raise PayloadTooLarge(f"body is {int(length)} bytes (limit {limit})", field="body")
    # A browser sends a body without a preflight only as text/plain, a form, or untyped; a
    # client holding a key may leave the type out.
    media = get(b"content-type")
    if (media is None and open_api) or (
        media is not None and media.partition(b";")[0].strip().lower() != _JSON
    ):
        raise UnsupportedMediaType(
            "the body must be JSON sent as Content-Type: application/json", field="content-type"
        )
    return Screened(True, open_api, key)


def _bearer(authorization: bytes | None, subscription: bytes | None) -> str | None:
    if authorization is not None and authorization[:7].lower() == b"bearer ":
        return authorization[7:].decode("latin-1").strip()
    return None if subscription is None else subscription.decode("latin-1")


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole body, refusing it (413) as soon as more than ``limit`` bytes arrived, whatever
    the ``Content-Length`` said or when there was none (chunked)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes", field="body")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def check_json(body: bytes, settings: Settings) -> None:
    """Refuse a body nested too deep (400) or with a NUL character in any string (422)."""
    check_depth(body, settings.max_json_depth)
    if b"\\u0000" in body:  # the only way JSON can spell NUL: rare, so locate it only then
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return  # the route reports invalid JSON
        field = nul_field(document)
        if field is not None:
            raise nul_error(field)


async def buffered(receive: Receive, settings: Settings, *, check: bool = True) -> Receive:
    """Read and check the body of a request, then hand it on unchanged; ``check`` False only
    bounds it, for a route that names the bad parts of its body itself (events, per event)."""
    body = await read_body(receive, settings.max_body_bytes)
    if check:
        check_json(body, settings)
    pending: Message | None = {"type": "http.request", "body": body, "more_body": False}

    async def replay() -> Message:
        nonlocal pending
        if pending is None:
            return await receive()  # a disconnect, for routes that wait for it
        message, pending = pending, None
        return message

    return replay


async def refuse(app: Any, scope: Scope, send: Send, exc: FlywheelError) -> None:
    """Answer a request refused before routing, in the error shape of the route it was meant
    for (Personalizer's on its routes), counted under that route."""
    path = (route_of(app, scope) or ("unmatched",))[0]
    status, payload = exc.status, orjson.dumps(exc.to_dict())
    if path.startswith(("/personalizer", "/deployments/")):
        # Imported here: the Personalizer routes read their bodies with this module.
        from dataflywheel.api.personalizer import personalizer_error

        response = personalizer_error(exc)
        status, payload = response.status_code, bytes(response.body)
    await send_json(send, status, payload)
    app.state.metrics.record_request(path, status)
