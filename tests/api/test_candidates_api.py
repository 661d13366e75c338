"""POST /v1/recommendations with candidates, and new items served over HTTP at once."""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

TITLES = [
    "amber",
    "birch",
    "cedar",
    "delta",
    "ember",
    "fjord",
    "grove",
    "harbor",
    "indigo",
    "jasper",
    "kestrel",
    "lumen",
]


def _trained(client: TestClient) -> None:
    """Odd users click only action items a*, even users only drama items b*."""
    items = [
        {"id": f"{kind}{i}", "categories": [genre], "attributes": {"title": f"{TITLES[i]} {n}{i}"}}
        for n, (kind, genre) in enumerate([("a", "action"), ("b", "drama")])
        for i in range(12)
    ]
    assert client.post("/v1/items", json={"items": items}).status_code == 200
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


def test_candidates_are_ranked_and_only_they_are_returned(client: TestClient) -> None:
    _trained(client)
    client.put("/v1/items/brand-new", json={"categories": ["action"]})
    candidates = ["b1", "brand-new", "a0", "b2"]
    response = client.post("/v1/recommendations", json={"user_id": "u1", "candidates": candidates})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"recommendation_id", "model_version", "policy", "experiment", "items"}
    ranked = [item["item_id"] for item in body["items"]]
    assert sorted(ranked) == sorted(candidates)  # k omitted: all of them
    assert ranked.index("b1") > ranked.index("brand-new") and ranked.index("b2") > 1
    assert all(0 < item["propensity"] <= 1 for item in body["items"])
    top = client.post(
        "/v1/recommendations", json={"user_id": "u1", "candidates": candidates, "k": 2}
    )
    assert len(top.json()["items"]) == 2


def test_unknown_or_malformed_candidates_are_422_naming_the_field(client: TestClient) -> None:
    _trained(client)
    for candidates, field in [
        (["a0", "nope"], "candidates[1]"),
        ([], "candidates"),
    ]:
        response = client.post(
            "/v1/recommendations", json={"user_id": "u1", "candidates": candidates}
        )
        assert response.status_code == 422, response.text
        error = response.json()["error"]
        assert error["code"] == "invalid" and error["field"] == field
    wrong_type = client.post("/v1/recommendations", json={"user_id": "u1", "candidates": [3]})
    assert wrong_type.status_code == 422
    assert "candidates" in str(wrong_type.json()["error"])


def test_an_item_put_over_http_is_served_by_the_next_get(client: TestClient) -> None:
    """The new item's first request is the fast GET path, with no retrain in between."""
    _trained(client)
    before = client.get("/v1/recommendations", params={"user_id": "u1", "k": 10}).json()
    assert "fresh" not in [item["item_id"] for item in before["items"]]
    put = client.put(
        "/v1/items/fresh", json={"categories": ["action"], "attributes": {"title": "Quartz"}}
    )
    assert put.status_code == 200
    after = client.get("/v1/recommendations", params={"user_id": "u1", "k": 10}).json()
    assert after["model_version"] == "v1"
    assert "fresh" in [item["item_id"] for item in after["items"]], after
