"""POST /v1/events: the ingestion endpoint (fast route, msgspec fast path, group commit).

Answered from the app's fast table (:mod:`dataflywheel.api.fast`): at thousands of
single-event requests per second, the middleware stack and dependency solving cost more than
the ingestion itself. The raw ASGI route serves the same handler through the full stack, and
:func:`document` adds it to the OpenAPI schema.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dataflywheel.api.deps import bearer_key, send_json
from dataflywheel.api.fast import Answer, FastRoute
from dataflywheel.api.guard import read_body
from dataflywheel.api.schemas import ERROR_RESPONSES, EventBatch, IngestOut
from dataflywheel.errors import ValidationError
from dataflywheel.ingest.service import Batch, IngestResult
from dataflywheel.ingest.validate import check_depth
from dataflywheel.ingest.wire import decode_batch
from dataflywheel.wheel import Flywheel

PATH = "/v1/events"


def parse_events(body: bytes, max_batch: int, max_depth: int) -> list[Any]:
    """The raw ``events`` list of a body, or a 4xx error when the body has the wrong shape."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # The envelope takes three levels: {"events": [{"context": ...}]}.
        check_depth(body, max_depth + 3)
        raise ValidationError(f"body is not valid JSON: {exc}", field="body") from None
    events = document.get("events") if isinstance(document, dict) else None
    if not isinstance(events, list):
        raise ValidationError('body must be an object {"events": [...]}', field="events")
    if not 1 <= len(events) <= max_batch:
        raise ValidationError(f"must hold 1 to {max_batch} events", field="events")
    extra = set(document) - {"events"}
    if extra:
        raise ValidationError("unknown field", field=sorted(extra)[0])
    return events


class PostEvents:
    """Store a batch of 1..10 000 events; valid ones are durably committed before the reply.

    A class so that Starlette mounts it as an ASGI app instead of wrapping it as an endpoint.
    Through the full stack only when the app's fast table is off (see :data:`FAST`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        state = request.app.state
        state.keys.check(bearer_key(request), "ingest")
        body = await read_body(receive, state.wheel.settings.max_body_bytes)
        await send_json(send, *await post_events(request, body))


async def post_events(request: Request, body: bytes) -> Answer:
    """Decode, validate, queue for the group commit, and answer once durable."""
    state = request.app.state
    wheel: Flywheel = state.wheel
    settings = wheel.settings
    now = time.time()
    fast = decode_batch(body, settings, wheel.ingestor.validator, now)
    if fast is not None:
        valid, rejected = fast
        result = IngestResult(rejected=rejected)
    else:
        valid, result = wheel.ingestor.validate(
            parse_events(body, settings.max_batch, settings.max_json_depth), now
        )
    future = state.writer.submit(Batch(valid, len(result.rejected), now))
    result.settle(len(valid), await asyncio.wrap_future(future))
    state.metrics.record_ingest(result)
    return 200, orjson.dumps(result.to_dict())


# Bad events are rejected one by one, keeping the good ones: the body is only bounded.
FAST = (FastRoute("POST", PATH, post_events, checks_body=False),)


class EventsRoute(Route):
    """The raw route, named in ``scope["route"]`` like FastAPI's routes (metrics label by it)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        await super().handle(scope, receive, send)


# Mounted first on the app's own router: the busiest route is matched before any other.
route = EventsRoute(PATH, PostEvents(), methods=["POST"], include_in_schema=False)


def document(schema: dict[str, Any]) -> None:
    """Describe ``POST /v1/events`` in an OpenAPI ``schema`` (the raw route is not in it)."""
    template = "#/components/schemas/{model}"
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in (EventBatch, IngestOut):
        spec = model.model_json_schema(ref_template=template)
        components.update(spec.pop("$defs", {}))
        components[model.__name__] = spec

    def body_of(model: str) -> dict[str, Any]:
        return {"application/json": {"schema": {"$ref": template.format(model=model)}}}

    responses: dict[str, Any] = {
        "200": {"description": "Successful Response", "content": body_of("IngestOut")}
    }
    for status, error in ERROR_RESPONSES.items():
        responses[str(status)] = {
            "description": error["description"],
            "content": body_of(error["model"].__name__),
        }
    schema.setdefault("paths", {})[PATH] = {
        "post": {
            "tags": ["events"],
            "summary": "Post Events",
            "description": (PostEvents.__doc__ or "").split("\n")[0],
            "operationId": "post_events_v1_events_post",
            "requestBody": {"required": True, "content": body_of("EventBatch")},
            "responses": responses,
        }
    }
