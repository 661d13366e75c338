"""The Personalizer routes in-process: key headers, path parameters and error shapes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

import dataflywheel as dfw
from dataflywheel.api import personalizer
from dataflywheel.api.app import create_app
from dataflywheel.config import load_settings
from dataflywheel.keys import create_key

ACTIONS = [{"id": a, "features": [{"kind": a}]} for a in ("a", "b", "c")]


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[TestClient, str, str]]:
    """A client on a store with keys: (client, ingest key, admin key)."""
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        ingest, admin = create_key(wheel.store, "ingest"), create_key(wheel.store, "admin")
    with TestClient(create_app(load_settings(db=db))) as client:
        yield client, ingest, admin


def test_rank_and_reward_under_every_prefix(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with TestClient(create_app(load_settings(db=db))) as client:
        for prefix in ("/personalizer", "/personalizer/v1.0", "/deployments/default/personalizer"):
            rank = client.post(f"{prefix}/rank", json={"actions": ACTIONS})
            assert rank.status_code == 201, rank.text
            event_id = rank.json()["eventId"]
            reward = client.post(f"{prefix}/events/{event_id}/reward", json={"value": 1})
            assert reward.status_code == 204, reward.text
        unknown = client.post("/personalizer/events/nope/reward", json={"value": 1})
        assert unknown.status_code == 404
        assert unknown.json()["error"]["code"] == "ResourceNotFound"
        bad_version = client.post("/personalizer/1.0/rank", json={"actions": ACTIONS})
        assert bad_version.status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Bearer {ingest}"}, 201),
        ({"Ocp-Apim-Subscription-Key": "{ingest}"}, 201),
        ({"Authorization": "Basic x", "Ocp-Apim-Subscription-Key": "{ingest}"}, 201),
        ({"Authorization": "Bearer wrong", "Ocp-Apim-Subscription-Key": "{ingest}"}, 401),
    ],
)
def test_keys_from_either_header(
    keyed: tuple[TestClient, str, str], headers: dict[str, str], status: int
) -> None:
    client, ingest, _ = keyed
    sent = {k: v.format(ingest=ingest) for k, v in headers.items()}
    answer = client.post("/personalizer/rank", json={"actions": ACTIONS}, headers=sent)
    assert answer.status_code == status, answer.text
    if status == 401:
        assert answer.json()["error"]["code"] == "Unauthorized"


def test_configuration_needs_an_admin_key(keyed: tuple[TestClient, str, str]) -> None:
    client, ingest, admin = keyed
    path = "/personalizer/configurations/service"
    forbidden = client.get(path, headers={"Authorization": f"Bearer {ingest}"})
    assert forbidden.status_code == 403
    assert forbidden.json()["error"]["code"] == "Forbidden"
    assert client.get(path, headers={"Authorization": f"Bearer {admin}"}).status_code == 200


class Answered:
    """The application with rank and reward answered ahead of its middleware stack."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.answered = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await personalizer.answer(self.app, scope, receive, send):
            self.answered += 1
        else:
            await self.app(scope, receive, send)


def test_answer_gives_the_same_responses_and_metrics_as_the_full_stack(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        ingest = create_key(wheel.store, "ingest")
        admin = create_key(wheel.store, "admin")
    auth = {"Authorization": f"Bearer {ingest}"}
    answered = Answered(create_app(load_settings(db=db)))
    with TestClient(answered) as client:
        for prefix in ("/personalizer", "/deployments/default/personalizer/v1.0"):
            rank = client.post(f"{prefix}/rank", json={"actions": ACTIONS}, headers=auth)
            assert rank.status_code == 201
            assert {a["id"] for a in rank.json()["ranking"]} == {"a", "b", "c"}
            path = f"{prefix}/events/{rank.json()['eventId']}/reward"
            assert client.post(path, json={"value": 1}, headers=auth).status_code == 204
        unauthorised = client.post("/personalizer/rank", json={"actions": ACTIONS})
        assert unauthorised.status_code == 401
        assert unauthorised.json()["error"]["code"] == "Unauthorized"
        bad = client.post("/personalizer/rank", content=b"{", headers=auth)
        assert bad.status_code == 400 and bad.json()["error"]["target"] == "body"
        assert answered.answered == 6
        multislot = client.post("/personalizer/multislot/rank", json={}, headers=auth)
        assert multislot.status_code == 400 and answered.answered == 6  # the full stack's
        status = client.get("/v1/decisions", headers={"Authorization": f"Bearer {admin}"})
        assert status.json()["deployments"][0]["learned"] == 2
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {admin}"}).text
    assert 'route="/personalizer/rank",status="2xx"} 1.0' in metrics
    assert 'route="/personalizer/rank",status="4xx"} 2.0' in metrics
    reward = 'route="/deployments/{deployment}/personalizer/{api_version}/events/{eventId}/reward"'
    assert f'{reward},status="2xx"}} 1.0' in metrics
