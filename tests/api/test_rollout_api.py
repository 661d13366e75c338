"""Experiments, triggers and labels over HTTP: clear errors, nothing half-applied."""

from __future__ import annotations

from fastapi.testclient import TestClient


def _trained(client: TestClient) -> None:
    events = [
        {"user_id": f"u{u}", "item_id": f"i{(u + i) % 12}", "type": "click", "timestamp": 1.7e9 + i}
        for u in range(20)
        for i in range(8)
    ]
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    assert (
        client.post("/v1/models/train", json={"model": "popularity", "budget": 5}).status_code
        == 200
    )
    assert (
        client.post("/v1/models/train", json={"model": "itemknn", "budget": 5}).status_code == 200
    )


def test_experiment_lifecycle_and_bad_specs(client: TestClient) -> None:
    _trained(client)
    arms = [
        {"name": "control", "model_version": "v1", "weight": 50},
        {"name": "candidate", "model_version": "v2", "weight": 40},
    ]
    bad_sum = client.post("/v1/experiments", json={"arms": arms})
    assert bad_sum.status_code == 422 and bad_sum.json()["error"]["field"].startswith("arms")
    unknown = client.post(
        "/v1/experiments",
        json={"arms": [arms[0], {"name": "x", "model_version": "v9", "weight": 50}]},
    )
    assert unknown.status_code == 404
    assert client.get("/v1/models").json()["models"][1]["status"] == "candidate"  # untouched

    arms[1]["weight"] = 50
    created = client.post("/v1/experiments", json={"arms": arms, "metric": "ctr"})
    assert created.status_code == 200, created.text
    experiment = created.json()
    assert experiment["status"] == "running"
    again = client.post("/v1/experiments", json={"arms": arms})
    assert again.status_code == 409
    blocked = client.post("/v1/models/v2/promote")
    assert blocked.status_code == 409 and "experiment" in blocked.json()["error"]["message"]

    answer = client.get("/v1/recommendations?user_id=u1&k=3").json()
    status = client.get(f"/v1/experiments/{experiment['id']}").json()
    assert {arm["name"] for arm in status["arms"]} == {"control", "candidate"}
    assert status["status"] == "running"
    assert answer["items"]

    stopped = client.post(f"/v1/experiments/{experiment['id']}/stop")
    assert stopped.status_code == 200 and stopped.json()["status"] == "stopped"
    assert client.post(f"/v1/experiments/{experiment['id']}/stop").status_code == 409
    assert client.get("/v1/experiments/nope").status_code == 404


def test_triggers_queue_and_labels(client: TestClient) -> None:
    bad = client.post("/v1/triggers", json={"name": "x", "task": "t", "when": {"field": "nope"}})
    assert bad.status_code == 422
    rule = {
        "name": "dislikes",
        "task": "relevance",
        "when": {"all": [{"field": "type", "op": "eq", "value": "dislike"}]},
    }
    assert client.post("/v1/triggers", json=rule).status_code == 200
    assert client.post("/v1/triggers", json=rule).status_code == 409
    assert client.get("/v1/labels/queue").json() == {"cases": []}
    unknown = client.post("/v1/labels", json={"labels": [{"id": 12345, "value": 1}]})
    assert unknown.status_code == 404
