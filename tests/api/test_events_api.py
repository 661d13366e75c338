"""POST /v1/events and friends over the real app: shapes, partial batches, limits, auth."""

from __future__ import annotations

import time

import orjson
from fastapi.testclient import TestClient

from dataflywheel.keys import create_key


def test_batch_with_bad_events_keeps_the_good_ones(client: TestClient) -> None:
    body = {
        "events": [
            {
                "user_id": "u1",
                "item_id": "i1",
                "type": "click",
                "timestamp": "2024-05-01T10:00:00Z",
            },
            {"user_id": "u1", "item_id": "i2", "type": "click", "value": "lots"},
            {"user_id": "u2", "item_id": "i1", "type": "rating", "value": 4.5},
            {"user_id": "u3", "type": "click", "timestamp": time.time() + 10 * 86_400},
        ]
    }
    response = client.post("/v1/events", json=body)
    assert response.status_code == 200
    payload = response.json()
    assert payload["accepted"] == 2
    assert [(r["index"], r["field"]) for r in payload["rejected"]] == [
        (1, "value"),
        (3, "timestamp"),
    ]
    assert client.get("/v1/stats").json()["events"] == 2


def test_fast_and_slow_paths_agree_on_rejections(client: TestClient) -> None:
    # All well-typed (fast path) but one has an unknown type and one a future timestamp.
    body = {
        "events": [
            {"user_id": "u", "type": "click"},
            {"user_id": "u", "type": "warp"},
            {"user_id": "u", "type": "click", "timestamp": time.time() + 10 * 86_400},
            {"user_id": "u", "type": "click", "context": {"page": "home"}},
        ]
    }
    payload = client.post("/v1/events", json=body).json()
    assert payload["accepted"] == 2
    assert [(r["index"], r["field"]) for r in payload["rejected"]] == [
        (1, "type"),
        (2, "timestamp"),
    ]


def test_nul_characters_are_rejected_per_event(client: TestClient) -> None:
    body = {
        "events": [
            {"user_id": "u\x00", "type": "click"},
            {"user_id": "u", "item_id": "i", "type": "click", "context": {"note": "a\x00b"}},
        ]
    }
    payload = client.post("/v1/events", json=body).json()
    assert payload["accepted"] == 1
    assert [(r["index"], r["field"]) for r in payload["rejected"]] == [(0, "user_id")]


def test_unknown_types_longer_than_the_column_are_rejected(client: TestClient) -> None:
    client.app.state.wheel.settings.accept_unknown_types = True  # type: ignore[attr-defined]
    body = {"events": [{"user_id": "u", "type": "t" * 65}, {"user_id": "u", "type": "t" * 64}]}
    payload = client.post("/v1/events", json=body).json()
    assert payload["accepted"] == 1
    assert [(r["index"], r["field"]) for r in payload["rejected"]] == [(0, "type")]


def test_retry_reports_duplicates(client: TestClient) -> None:
    body = {"events": [{"event_id": f"e{i}", "user_id": "u", "type": "click"} for i in range(10)]}
    assert client.post("/v1/events", json=body).json()["accepted"] == 10
    again = client.post("/v1/events", json=body).json()
    assert (again["accepted"], again["duplicates"]) == (0, 10)


def test_malformed_bodies_store_nothing(client: TestClient) -> None:
    cases = [
        b"{not json",
        b"[]",
        b'{"events": {}}',
        b'{"events": []}',
        b'{"events": [{"user_id": "u", "type": "click"}], "extra": 1}',
        orjson.dumps({"events": [{"user_id": "u", "type": "click"}] * 10_001}),
    ]
    for body in cases:
        response = client.post(
            "/v1/events", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code in (400, 422), body[:40]
        error = response.json()["error"]
        assert error["code"] and error["message"]
    assert client.get("/v1/stats").json()["events"] == 0


def test_oversize_body_is_413(client: TestClient) -> None:
    client.app.state.wheel.settings.max_body_bytes = 1_000  # type: ignore[attr-defined]
    body = orjson.dumps({"events": [{"user_id": "u" * 50, "type": "click"}] * 40})
    response = client.post("/v1/events", content=body)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_items_and_users_round_trip(client: TestClient) -> None:
    assert (
        client.put(
            "/v1/items/m1", json={"categories": ["drama"], "attributes": {"y": 1}}
        ).status_code
        == 200
    )
    assert client.post("/v1/items", json={"items": [{"id": "m2", "hidden": True}]}).json() == {
        "upserted": 1
    }
    assert client.get("/v1/items/m1").json()["categories"] == ["drama"]
    assert client.get("/v1/items/m2").json()["hidden"] is True
    assert client.put("/v1/users/u1", json={"attributes": {"country": "FR"}}).status_code == 200
    assert client.get("/v1/users/u1").json()["attributes"] == {"country": "FR"}
    missing = client.get("/v1/users/nobody")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = client.put("/v1/items/m3", json={"hidden": "maybe"})
    assert bad.status_code == 422 and "hidden" in bad.json()["error"]["message"]


def test_keys_and_scopes(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    client.app.state.keys._loaded_at = 0.0  # type: ignore[attr-defined]
    assert client.get("/v1/stats").status_code == 200  # no keys yet: open
    ingest = create_key(store, "ingest")
    admin = create_key(store, "admin")
    client.app.state.keys._loaded_at = 0.0  # type: ignore[attr-defined]
    body = {"events": [{"user_id": "u", "type": "click"}]}
    assert client.post("/v1/events", json=body).status_code == 401
    assert (
        client.post("/v1/events", json=body, headers={"Authorization": "Bearer nope"}).status_code
        == 401
    )
    assert (
        client.post(
            "/v1/events", json=body, headers={"Authorization": f"Bearer {ingest}"}
        ).status_code
        == 200
    )
    assert client.get("/metrics", headers={"Authorization": f"Bearer {ingest}"}).status_code == 403
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"})
    assert metrics.status_code == 200
    assert 'flywheel_events_total{outcome="accepted"} 1.0' in metrics.text
    assert 'flywheel_http_requests_total{route="/v1/events",status="4xx"} 2.0' in metrics.text
    assert 'flywheel_http_requests_total{route="/v1/events",status="2xx"} 1.0' in metrics.text


def test_other_methods_on_events_are_405(client: TestClient) -> None:
    response = client.get("/v1/events")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_openapi_documents_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path in ("/v1/events", "/v1/items/{item_id}", "/v1/users/{user_id}", "/v1/stats"):
        assert path in spec["paths"]
    body = spec["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/EventBatch"}
    assert "user_id" in spec["components"]["schemas"]["EventIn"]["properties"]
