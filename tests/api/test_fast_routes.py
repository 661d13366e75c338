"""The fast routes (answered ahead of the middleware stack) and the same handlers through the
full stack give byte-identical answers to the same bad requests."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dataflywheel as dfw
from dataflywheel.api.app import FlywheelAPI, create_app
from dataflywheel.config import load_settings
from dataflywheel.ingest import validate
from dataflywheel.keys import create_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

KEY = "{key}"
RANK = {"actions": [{"id": "a", "features": [{"kind": "a"}]}]}
# (method, path, query or JSON body or raw bytes, Authorization)
CASES: list[tuple[str, str, Any, str | None]] = [
    ("GET", "/v1/recommendations", "", KEY),
    ("GET", "/v1/recommendations", "user_id=", KEY),
    ("GET", "/v1/recommendations", "user_id=" + "u" * 257, KEY),
    ("GET", "/v1/recommendations", "user_id=u&k=0", KEY),
    ("GET", "/v1/recommendations", "user_id=u&k=10001", KEY),
    ("GET", "/v1/recommendations", "user_id=u&k=abc", KEY),
    ("GET", "/v1/recommendations", "user_id=u%00", KEY),
    ("GET", "/v1/recommendations", "user_id=u", None),
    ("GET", "/v1/recommendations", "user_id=u", "Bearer wrong"),
    ("POST", "/v1/events", b"{", KEY),
    ("POST", "/v1/events", b"[]", KEY),
    ("POST", "/v1/events", {"events": []}, KEY),
    ("POST", "/v1/events", {"events": [{"type": "click"}]}, KEY),
    ("POST", "/v1/events", {"events": [{"user_id": "u\x00", "type": "click"}]}, KEY),
    ("POST", "/v1/events", {"events": [{"user_id": "u", "type": "nope", "x": 1}]}, KEY),
    ("POST", "/v1/events", {"events": [{"user_id": "u", "type": "click"}], "more": 1}, KEY),
    ("POST", "/v1/events", b'{"events": [' * 40, KEY),
    ("POST", "/v1/events", {"events": [{"user_id": "u", "type": "click"}]}, "Bearer wrong"),
    ("POST", "/personalizer/rank", b"{", KEY),
    ("POST", "/personalizer/rank", b"[1]", KEY),
    ("POST", "/personalizer/rank", {}, KEY),
    ("POST", "/personalizer/rank", {**RANK, "eventId": "e\x00"}, KEY),
    ("POST", "/personalizer/rank", {**RANK, "deferActivation": "yes"}, KEY),
    ("POST", "/personalizer/rank", RANK, "Bearer wrong"),
    ("POST", "/deployments/nope/personalizer/v1.0/rank", RANK, KEY),
    ("POST", "/personalizer/events/unknown/reward", {"value": 1}, KEY),
    ("POST", "/personalizer/events/unknown/reward", {"value": "high"}, KEY),
    ("POST", "/personalizer/vX/events/e/reward", {"value": 1}, KEY),
]


@pytest.fixture
def twins(tmp_path: Path) -> Iterator[tuple[TestClient, TestClient, str]]:
    """Two apps on one store: the fast table on, and off (the full stack only)."""
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        key = create_key(wheel.store, "ingest")
    full = create_app(load_settings(db=db))
    assert isinstance(full, FlywheelAPI)
    full.fast_routes_enabled = False
    with TestClient(create_app(load_settings(db=db))) as fast, TestClient(full) as slow:
        yield fast, slow, key


def _send(client: TestClient, case: tuple[str, str, Any, str | None], key: str) -> Any:
    method, path, payload, auth = case
    headers = {} if auth is None else {"Authorization": auth.format(key=f"Bearer {key}")}
    if method == "GET":
        return client.get(f"{path}?{payload}", headers=headers)
    if isinstance(payload, bytes):
        headers["Content-Type"] = "application/json"
        return client.post(path, content=payload, headers=headers)
    return client.post(path, json=payload, headers=headers)


@pytest.mark.parametrize("case", CASES, ids=[f"{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_fast_and_full_stack_answer_bad_requests_alike(
    twins: tuple[TestClient, TestClient, str], case: tuple[str, str, Any, str | None]
) -> None:
    fast, slow, key = twins
    assert FlywheelAPI.fast_routes.find(case[0], case[1]) is not None
    answered = _send(fast, case, key)
    reference = _send(slow, case, key)
    assert 400 <= answered.status_code < 500 or case[1] == "/v1/events", answered.text
    assert (answered.status_code, answered.content) == (reference.status_code, reference.content)


@pytest.mark.parametrize("path", ["/personalizer/rank", "/personalizer/events/e/reward"])
def test_a_decision_body_is_checked_once(
    twins: tuple[TestClient, TestClient, str], monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    checked: list[bytes] = []
    real = validate.too_deep

    def counted(raw: bytes, limit: int) -> bool:
        checked.append(raw)
        return real(raw, limit)

    monkeypatch.setattr(validate, "too_deep", counted)
    fast, slow, key = twins
    body = RANK if path.endswith("rank") else {"value": 1}
    for client in (fast, slow):
        checked.clear()
        _send(client, ("POST", path, body, KEY), key)
        assert len(checked) == 1


def test_both_count_the_request_under_the_route(twins: tuple[TestClient, TestClient, str]) -> None:
    fast, slow, key = twins
    for client in (fast, slow):
        _send(client, CASES[3], key)
        metrics = client.app.state.metrics  # type: ignore[attr-defined]
        count = metrics.requests.labels("/v1/recommendations", "4xx")._value.get()
        assert count == 1.0


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(query=st.text(alphabet="uk=&0123456789-+ %a", max_size=20))
def test_any_query_is_answered_alike(twins: tuple[TestClient, TestClient, str], query: str) -> None:
    fast, slow, key = twins
    case = ("GET", "/v1/recommendations", query, KEY)
    answered, reference = _send(fast, case, key), _send(slow, case, key)
    assert answered.status_code == reference.status_code
    if answered.status_code != 200:
        assert answered.content == reference.content
    else:
        assert answered.json()["items"] == reference.json()["items"]


def test_app_state_entries_are_attributes_that_can_be_replaced_and_removed(tmp_path: Path) -> None:
    app = create_app(load_settings(db=f"sqlite:///{tmp_path / 'flywheel.db'}"))
    state = app.state
    state.decisions = "first"
    state.decisions = "second"
    assert (state.decisions, state._state["decisions"]) == ("second", "second")
    del state.decisions
    assert getattr(state, "decisions", None) is None and "decisions" not in state._state
    with pytest.raises(AttributeError):
        _ = state.decisions
