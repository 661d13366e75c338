"""Decisions over HTTP: the retired Azure AI Personalizer REST API, so its official SDKs work.

Routes exist under ``/personalizer`` (``azure-ai-personalizer``, which sends ``?api-version=``),
``/personalizer/{api-version}`` (``azure-cognitiveservices-personalizer`` uses ``v1.0``) and the
same two under ``/deployments/{name}`` for deployments other than ``default``; point an SDK at
``http://host:port`` or ``http://host:port/deployments/NAME``. Errors on these routes use
Personalizer's shape (``{"error": {"code": "BadRequest", "message", "target"}}``), which is also
this API's ``{"error": {"code", "message", ...}}``. ``GET /v1/decisions`` reports deployments.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.routing import APIRoute
from starlette.types import Receive, Send
from starlette.types import Scope as AsgiScope

from dataflywheel.api.deps import bearer_key, require, wheel_of
from dataflywheel.api.fast import Answer, FastRoute, FastTable, Handler, serve
from dataflywheel.api.guard import read_body, refuse, screen
from dataflywheel.api.schemas import ERROR_RESPONSES
from dataflywheel.decide.service import DEFAULT_DEPLOYMENT, DecisionService
from dataflywheel.errors import (
    AuthError,
    ConflictError,
    FlywheelError,
    ForbiddenError,
    NotFoundError,
    ValidationError,
)
from dataflywheel.keys import KeyRing, Scope

_CODES: tuple[tuple[type[FlywheelError], int, str], ...] = (
    (ValidationError, 400, "BadRequest"),
    (NotFoundError, 404, "ResourceNotFound"),
    (ConflictError, 409, "Conflict"),
    (ForbiddenError, 403, "Forbidden"),
    (AuthError, 401, "Unauthorized"),
)
_API_VERSION = re.compile(r"^v\d[\w.-]{0,31}$")
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_TIMESPAN = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d{1,2}):(?P<m>\d{2}):(?P<s>\d{2}(?:\.\d+)?)$")
PREFIXES = (
    "/personalizer",
    "/personalizer/{api_version}",
    "/deployments/{deployment}/personalizer",
    "/deployments/{deployment}/personalizer/{api_version}",
)
_NO_CONTENT = 204


def personalizer_error(exc: FlywheelError) -> Response:
    status, code = next(
        ((s, c) for cls, s, c in _CODES if isinstance(exc, cls)), (exc.status, exc.code)
    )
    body: dict[str, Any] = {"code": code, "message": exc.message}
    field = exc.details.get("field")
    if field is not None:
        body["target"] = field
    return Response(orjson.dumps({"error": body}), status, media_type="application/json")


class PersonalizerRoute(APIRoute):
    """A route that calls its endpoint directly with the request and the endpoint's path
    parameters: the endpoints parse their own bodies, so FastAPI's dependency solving would be
    per-request work for nothing. It checks the key itself and answers errors, including failed
    auth, in Personalizer's error shape. FastAPI still reads the signature for OpenAPI."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[..., Coroutine[Any, Any, Response]] = self.endpoint
        scope: Scope = "admin" if "configurations" in self.path else "ingest"
        names = tuple(p.name for p in self.dependant.path_params)

        async def route(request: Request) -> Response:
            try:
                keys: KeyRing = request.app.state.keys
                keys.check(bearer_key(request), scope)
                params = request.path_params
                return await endpoint(request, *[params[name] for name in names])
            except FlywheelError as exc:
                return personalizer_error(exc)

        return route


_lock = threading.Lock()


def service_of(request: Request) -> DecisionService:
    """The app's decision service, created on first use (and closed by the router lifespan)."""
    state = request.app.state
    service: DecisionService | None = getattr(state, "decisions", None)
    if service is None:
        with _lock:
            service = getattr(state, "decisions", None)
            if service is None:
                wheel = wheel_of(request)
                service = DecisionService(wheel.store, wheel.settings.artifacts_dir() / "decisions")
                state.decisions = service
    return service


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Write the decision log and save the learners when the server stops."""
    yield
    service: DecisionService | None = getattr(app.state, "decisions", None)
    if service is not None:
        service.close()
        app.state.decisions = None


def _deployment(request: Request) -> str:
    version = request.path_params.get("api_version")
    if version is not None and not _API_VERSION.match(version):
        raise NotFoundError(f"unknown API version {version!r}", field="api-version")
    name: str = request.path_params.get("deployment", DEFAULT_DEPLOYMENT)
    return name


async def _body(request: Request) -> dict[str, Any]:
    """The JSON object body (checked for depth and NUL characters by the app's guard)."""
    return _object(await read_body(request.receive, wheel_of(request).settings.max_body_bytes))


def _object(raw: bytes) -> dict[str, Any]:
    """A JSON object; NaN and Infinity parse so the feature check can name them."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValidationError(f"request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise ValidationError("request body must be a JSON object", field="body")
    return body


def _flag(body: Mapping[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ValidationError(f"{key} must be true or false", field=key)
    return value


def _json(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type="application/json")


def parse_duration(text: Any, field: str) -> float:
    """Seconds in an ISO 8601 duration (``PT10M``) or a .NET time span (``00:10:00``)."""
    match = (_DURATION.match(text) or _TIMESPAN.match(text)) if isinstance(text, str) else None
    if match is None or text in ("P", "PT"):
        raise ValidationError(f"{field} must be an ISO 8601 duration such as PT10M", field=field)
    parts = {k: float(v or 0) for k, v in match.groupdict().items()}
    return parts["d"] * 86_400 + parts["h"] * 3_600 + parts["m"] * 60 + parts["s"]


def format_duration(seconds: float) -> str:
    """``PT…H…M…S`` for a number of seconds."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3_600)
    minutes, secs = divmod(rest, 60)
    secs_text = f"{secs + seconds - whole:g}S" if secs or seconds != whole else ""
    text = (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "") + secs_text
    return "PT" + (text or "0S")


def _service_document(service: DecisionService, name: str) -> dict[str, Any]:
    """A deployment's settings as Personalizer's service configuration object."""
    status = service.status(name)
    settings, learner, apprentice = status["service"], status["learner"], status["apprentice"]
    imitated = round(apprentice["agreement"] * apprentice["rounds"])
    return {
        "rewardWaitTime": format_duration(settings["reward_wait_seconds"]),
        "defaultReward": settings["default_reward"],
        "rewardAggregation": settings["reward_aggregation"],
        "explorationPercentage": learner["epsilon"] * 100,
        "modelExportFrequency": "PT1M",
        "logRetentionDays": -1,
        "modelRetrainDays": 0,
        "learningMode": settings["learning_mode"],
        "isAutoOptimizationEnabled": False,
        "latestApprenticeModeMetrics": {
            "numberOfEvents": apprentice["rounds"],
            "numberOfImitatedEvents": imitated,
            "sumOfRewards": apprentice["baseline_reward"] * apprentice["rounds"],
            "sumOfImitatedRewards": apprentice["learner_reward_low"] * apprentice["rounds"],
        },
        "learner": learner,
    }


def _service_changes(body: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """Personalizer configuration fields mapped to ServiceConfig settings."""
    changes: dict[str, Any] = {}
    if "rewardWaitTime" in body:
        changes["reward_wait_seconds"] = parse_duration(body["rewardWaitTime"], "rewardWaitTime")
    for key, name in (
        ("defaultReward", "default_reward"),
        ("rewardAggregation", "reward_aggregation"),
        ("learningMode", "learning_mode"),
    ):
        if key in body:
            changes[name] = body[key]
    pct = body.get("explorationPercentage")
    if pct is not None and pct != current["explorationPercentage"]:
        raise ValidationError(
            "explorationPercentage follows the learner; set learner.epsilon instead",
            field="explorationPercentage",
        )
    return changes


personalizer_routes = APIRouter(route_class=PersonalizerRoute, tags=["decisions"])


async def rank(request: Request) -> Response:
    """Rank actions for a context; the served action is ``rewardActionId`` (201)."""
    return _response(_rank(request, await _body(request)))


def _rank(request: Request, body: dict[str, Any]) -> Answer:
    result = service_of(request).rank(
        body.get("contextFeatures"),
        body.get("actions"),
        excluded=body.get("excludedActions"),
        event_id=body.get("eventId"),
        defer_activation=_flag(body, "deferActivation"),
        deployment=_deployment(request),
    )
    answer = {
        "ranking": [{"id": i, "probability": p} for i, p in result.ranking],
        "eventId": result.event_id,
        "rewardActionId": result.reward_action_id,
    }
    return 201, orjson.dumps(answer)


async def reward(request: Request, eventId: str) -> Response:
    """Report the reward ``{"value": x}`` (x in [-1, 1]) of the event's served action (204)."""
    return _response(_reward(request, await _body(request), eventId))


def _reward(request: Request, body: dict[str, Any], event_id: str) -> Answer:
    service_of(request).reward(event_id, body.get("value"), deployment=_deployment(request))
    return _NO_CONTENT, b""


def _response(answer: Answer) -> Response:
    status, payload = answer
    if not payload:
        return Response(status_code=status)
    return Response(payload, status, media_type="application/json")


async def activate(request: Request, eventId: str) -> Response:
    """Start the reward wait of an event ranked with ``deferActivation`` (204)."""
    service_of(request).activate(eventId, deployment=_deployment(request))
    return Response(status_code=_NO_CONTENT)


async def rank_multislot(request: Request) -> Response:
    """Fill each slot with a different action (201)."""
    body = await _body(request)
    event_id, chosen = service_of(request).rank_multislot(
        body.get("contextFeatures"),
        body.get("actions"),
        body.get("slots"),
        event_id=body.get("eventId"),
        defer_activation=_flag(body, "deferActivation"),
        deployment=_deployment(request),
    )
    return _json(
        {"eventId": event_id, "slots": [{"id": s, "rewardActionId": a} for s, a in chosen]}, 201
    )


async def reward_multislot(request: Request, eventId: str) -> Response:
    """Report rewards ``{"reward": [{"slotId", "value"}]}`` of a multi-slot event (204)."""
    body = await _body(request)
    rewards = body.get("reward")
    if not isinstance(rewards, list) or not rewards:
        raise ValidationError("reward must be a non-empty list of {slotId, value}", field="reward")
    values: list[tuple[str | None, float]] = []
    for i, item in enumerate(rewards):
        slot = item.get("slotId") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(slot, str) or not isinstance(value, int | float) or value is True:
            raise ValidationError(f"reward[{i}] needs slotId and value", field=f"reward[{i}]")
        if not -1.0 <= value <= 1.0:
            raise ValidationError(f"reward[{i}].value must be in [-1, 1]", field=f"reward[{i}]")
        values.append((slot, float(value)))
    service_of(request).reward_slots(eventId, values, deployment=_deployment(request))
    return Response(status_code=_NO_CONTENT)


async def activate_multislot(request: Request, eventId: str) -> Response:
    """Start the reward wait of a deferred multi-slot event (204)."""
    service_of(request).activate(eventId, multislot=True, deployment=_deployment(request))
    return Response(status_code=_NO_CONTENT)


async def get_service_configuration(request: Request) -> Response:
    """The deployment's settings as Personalizer's service configuration."""
    return _json(_service_document(service_of(request), _deployment(request)))


async def put_service_configuration(request: Request) -> Response:
    """Change (or, under ``/deployments/NAME``, create) a deployment; ``learner`` is ours."""
    body = await _body(request)
    service, name = service_of(request), _deployment(request)
    current = _service_document(service, name) if name in service.names() else None
    changes = _service_changes(body, current or {"explorationPercentage": None})
    learner = body.get("learner")
    service.configure(name, service=changes, learner=learner)
    return _json(_service_document(service, name))


_ROUTES: tuple[tuple[str, str, Any], ...] = (
    ("POST", "/rank", rank),
    ("POST", "/events/{eventId}/reward", reward),
    ("POST", "/events/{eventId}/activate", activate),
    ("POST", "/multislot/rank", rank_multislot),
    ("POST", "/multislot/events/{eventId}/reward", reward_multislot),
    ("POST", "/multislot/events/{eventId}/activate", activate_multislot),
    ("GET", "/configurations/service", get_service_configuration),
    ("PUT", "/configurations/service", put_service_configuration),
)
for _prefix in PREFIXES:
    for _method, _path, _endpoint in _ROUTES:
        personalizer_routes.add_api_route(
            _prefix + _path,
            _endpoint,
            methods=[_method],
            responses=ERROR_RESPONSES,
            include_in_schema=_prefix == PREFIXES[0],
            name=f"{_endpoint.__name__}:{_prefix}",
        )

router = APIRouter(lifespan=lifespan, tags=["decisions"])
router.include_router(personalizer_routes)


@router.get("/v1/decisions", dependencies=[Depends(require("admin"))], responses=ERROR_RESPONSES)
def decisions_status(request: Request) -> dict[str, Any]:
    """Every deployment's settings, counters and apprentice agreement."""
    service = service_of(request)
    return {"deployments": [service.status(name) for name in service.names()]}


async def _fast_rank(request: Request, body: bytes) -> Answer:
    return _rank(request, _object(body))


async def _fast_reward(request: Request, body: bytes) -> Answer:
    return _reward(request, _object(body), request.path_params["eventId"])


def _render(exc: FlywheelError) -> Answer:
    response = personalizer_error(exc)
    return response.status_code, bytes(response.body)


_FAST_HANDLERS: dict[Any, Handler] = {rank: _fast_rank, reward: _fast_reward}

# A round is a rank and a reward call, and the stack costs more than the decision: those two
# are answered from the fast table. Every POST route is listed, to keep routing order.
FAST = tuple(
    FastRoute("POST", route.path, _FAST_HANDLERS.get(route.endpoint), render=_render)
    for route in personalizer_routes.routes
    if isinstance(route, PersonalizerRoute) and "POST" in (route.methods or ())
)
_TABLE = FastTable(FAST)


async def answer(app: Any, scope: AsgiScope, receive: Receive, send: Send) -> bool:
    """Answer a rank or reward call by the fast routes' wrapper; False, sending nothing, for
    any other request (for an app that places these calls ahead of its own stack)."""
    found = _TABLE.find(scope["method"], scope["path"]) if scope["type"] == "http" else None
    if found is None:
        return False
    try:
        screened = screen(app, scope)
    except FlywheelError as exc:
        await refuse(app, scope, send, exc)
        return True
    await serve(app, found, scope, receive, send, screened)
    return True
