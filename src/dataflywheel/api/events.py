"""POST /v1/events: the ingestion endpoint (raw body, msgspec fast path, group commit)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from dataflywheel.api.deps import require, wheel_of
from dataflywheel.api.schemas import ERROR_RESPONSES, IngestOut
from dataflywheel.errors import FlywheelError, ValidationError
from dataflywheel.ingest.service import Batch, IngestResult
from dataflywheel.ingest.wire import decode_batch

router = APIRouter(tags=["events"])


class PayloadTooLarge(FlywheelError):
    code = "too_large"
    status = 413


async def read_body(request: Request, limit: int) -> bytes:
    """The raw request body, refusing bodies over ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body is {declared} bytes (limit {limit})")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body exceeds {limit} bytes")
    return bytes(body)


def parse_events(body: bytes, max_batch: int) -> list[Any]:
    """The raw ``events`` list of a body, or a 4xx error when the body has the wrong shape."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
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


@router.post(
    "/v1/events",
    response_model=IngestOut,
    responses=ERROR_RESPONSES,
    dependencies=[Depends(require("ingest"))],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": {}}}}
    },
)
async def post_events(request: Request) -> Response:
    """Store a batch of 1..10 000 events; valid ones are durably committed before the reply."""
    wheel = wheel_of(request)
    settings = wheel.settings
    body = await read_body(request, settings.max_body_bytes)
    now = time.time()
    fast = decode_batch(body, settings, wheel.ingestor.validator, now)
    if fast is not None:
        valid, rejected = fast
        result = IngestResult(rejected=rejected)
    else:
        valid, result = wheel.ingestor.validate(parse_events(body, settings.max_batch), now)
    future = request.app.state.writer.submit(Batch(valid, len(result.rejected), now))
    result.accepted = await asyncio.wrap_future(future)
    result.duplicates = len(valid) - result.accepted
    request.app.state.metrics.record_ingest(result)
    return Response(orjson.dumps(result.to_dict()), media_type="application/json")
