"""GET /v1/recommendations over HTTP (answered ahead of the middleware stack) and its twins."""

from __future__ import annotations

import warnings

from dataflywheel.keys import create_key

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


def _trained(client: TestClient) -> None:
    events = [
        {
            "user_id": f"u{u}",
            "item_id": f"{'a' if u % 2 else 'b'}{(u * 3 + n) % 12}",
            "type": "click",
        }
        for u in range(30)
        for n in range(6)
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    client.app.state.wheel.train("itemknn", budget=5)  # type: ignore[attr-defined]


def _impressions(client: TestClient) -> int:
    wheel = client.app.state.wheel  # type: ignore[attr-defined]
    wheel.flush()
    with wheel.store.read() as conn:
        return int(conn.exec_driver_sql("SELECT count(*) FROM impressions").scalar_one())


def test_get_answers_the_contract_shape_and_logs_it(client: TestClient) -> None:
    _trained(client)
    response = client.get("/v1/recommendations", params={"user_id": "u1", "k": "4"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"recommendation_id", "model_version", "policy", "experiment", "items"}
    assert body["model_version"] == "v1" and len(body["items"]) == 4
    assert all(set(item) == {"item_id", "score", "propensity"} for item in body["items"])
    consumed = {f"a{(3 + n) % 12}" for n in range(6)}
    assert not consumed & {item["item_id"] for item in body["items"]}
    # The default k, a repeated parameter (the last wins) and an unknown one (ignored).
    assert len(client.get("/v1/recommendations?user_id=u1").json()["items"]) == 10
    assert len(client.get("/v1/recommendations?user_id=u1&k=9&k=2&x=1").json()["items"]) == 2
    assert _impressions(client) == 3
    # POST keeps the full stack and the same answer shape.
    posted = client.post("/v1/recommendations", json={"user_id": "u1", "k": 3})
    assert posted.status_code == 200 and len(posted.json()["items"]) == 3


def test_bad_queries_name_the_field_and_log_nothing(client: TestClient) -> None:
    _trained(client)
    before = _impressions(client)
    for query, field in [
        ("", "user_id"),
        ("k=3", "user_id"),
        ("user_id=", "user_id"),
        (f"user_id={'x' * 257}", "user_id"),
        ("user_id=u1&k=0", "k"),
        ("user_id=u1&k=201", "k"),
        ("user_id=u1&k=abc", "k"),
        ("user_id=u1&k=1.5", "k"),
        ("user_id=u1&k=99999999999999999999", "k"),
    ]:
        response = client.get(f"/v1/recommendations?{query}")
        assert response.status_code == 422, query
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["field"] == field, query
        assert field in error["message"], query
    assert _impressions(client) == before


def test_keys_and_metrics_hold_on_the_short_cut(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    ingest, admin = create_key(store, "ingest"), create_key(store, "admin")
    client.app.state.keys._loaded_at = 0.0  # type: ignore[attr-defined]
    assert client.get("/v1/recommendations?user_id=u1").status_code == 401
    wrong = client.get("/v1/recommendations?user_id=u1", headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    allowed = client.get(
        "/v1/recommendations?user_id=new-user&k=2", headers={"Authorization": f"Bearer {ingest}"}
    )
    assert allowed.status_code == 200  # an unknown user: popular items, not an error
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    assert 'flywheel_http_requests_total{route="/v1/recommendations",status="4xx"} 2.0' in metrics
    assert 'flywheel_http_requests_total{route="/v1/recommendations",status="2xx"} 1.0' in metrics
