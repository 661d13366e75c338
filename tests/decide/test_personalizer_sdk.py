"""The official Azure Personalizer Python SDKs, unchanged, against a real `flywheel serve`.

A synthetic problem: in the morning ``news`` is the only rewarded action, in the evening
``music``. After a few hundred rank → reward rounds through an SDK, the ranking must favour the
right action for each context.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as LegacyClient
from azure.cognitiveservices.personalizer.models import RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from msrest.authentication import CognitiveServicesCredentials

import dataflywheel as dfw
from dataflywheel.keys import create_key
from helpers import start_server

BEST = {"morning": "news", "evening": "music"}
ACTIONS = [
    {"id": "news", "features": [{"topic": "current affairs", "length": 0.3}]},
    {"id": "sports", "features": [{"topic": "football", "length": 0.6}]},
    {"id": "music", "features": [{"topic": "jazz", "length": 0.9}]},
]
ROUNDS = 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """A served store with keys: (endpoint, ingest key, admin key)."""
    db = f"sqlite:///{tmp_path_factory.mktemp('sdk') / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        keys = create_key(wheel.store, "ingest"), create_key(wheel.store, "admin")
    process, port = start_server(db)
    try:
        yield f"http://127.0.0.1:{port}", *keys
    finally:
        process.terminate()
        process.wait(timeout=30)


def _context(i: int) -> str:
    return "morning" if i % 2 == 0 else "evening"


def test_azure_ai_personalizer_learns(server: tuple[str, str, str]) -> None:
    endpoint, key, _ = server
    client = PersonalizerClient(endpoint, AzureKeyCredential(key))
    for i in range(ROUNDS):
        when = _context(i)
        answer = client.rank({"contextFeatures": [{"time": when}], "actions": ACTIONS})
        assert abs(sum(a["probability"] for a in answer["ranking"]) - 1.0) < 1e-9
        value = 1.0 if answer["rewardActionId"] == BEST[when] else 0.0
        client.reward(answer["eventId"], {"value": value})
    for when, best in BEST.items():
        answer = client.rank({"contextFeatures": [{"time": when}], "actions": ACTIONS})
        probabilities = {a["id"]: a["probability"] for a in answer["ranking"]}
        assert max(probabilities, key=probabilities.__getitem__) == best
        assert probabilities[best] > 0.8


def test_legacy_sdk_learns_on_its_own_deployment(server: tuple[str, str, str]) -> None:
    """azure-cognitiveservices-personalizer (``/personalizer/v1.0``) on another deployment."""
    endpoint, key, admin_key = server
    base = f"{endpoint}/deployments/legacy"
    admin = PersonalizerAdministrationClient(base, AzureKeyCredential(admin_key))
    created = admin.update_service_configuration({"rewardWaitTime": "PT1M"})
    assert created["rewardWaitTime"] == "PT1M"
    with pytest.raises(HttpResponseError) as forbidden:
        PersonalizerAdministrationClient(base, AzureKeyCredential(key)).get_service_configuration()
    assert forbidden.value.status_code == 403
    client = LegacyClient(base, CognitiveServicesCredentials(key))
    actions = [RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS]
    for i in range(ROUNDS):
        when = _context(i)
        answer = client.rank(RankRequest(actions=actions, context_features=[{"time": when}]))
        client.events.reward(answer.event_id, 1.0 if answer.reward_action_id == BEST[when] else 0.0)
    for when, best in BEST.items():
        answer = client.rank(RankRequest(actions=actions, context_features=[{"time": when}]))
        top = max(answer.ranking, key=lambda a: a.probability)
        assert top.id == best


def test_multislot_deferred_activation_and_errors(server: tuple[str, str, str]) -> None:
    endpoint, key, _ = server
    client = PersonalizerClient(endpoint, AzureKeyCredential(key))
    answer = client.rank_multi_slot(
        {
            "contextFeatures": [{"time": "morning"}],
            "actions": ACTIONS,
            "slots": [
                {"id": "hero", "baselineAction": "news"},
                {"id": "side", "baselineAction": "sports", "features": [{"size": "small"}]},
            ],
            "deferActivation": True,
        }
    )
    chosen = [slot["rewardActionId"] for slot in answer["slots"]]
    assert [slot["id"] for slot in answer["slots"]] == ["hero", "side"]
    assert len(set(chosen)) == 2
    client.activate_multi_slot(answer["eventId"])
    client.reward_multi_slot(answer["eventId"], {"reward": [{"slotId": "hero", "value": 1.0}]})

    with pytest.raises(HttpResponseError) as unknown:
        client.reward("no-such-event", {"value": 1.0})
    assert unknown.value.status_code == 404
    assert unknown.value.error is not None and unknown.value.error.code == "ResourceNotFound"
    with pytest.raises(HttpResponseError) as empty:
        client.rank({"contextFeatures": [], "actions": []})
    assert empty.value.status_code == 400
    assert "1..50" in str(empty.value)
    with pytest.raises(HttpResponseError) as duplicate:
        client.rank({"actions": ACTIONS, "eventId": answer["eventId"]})
    assert duplicate.value.status_code == 409


def test_key_is_required(server: tuple[str, str, str]) -> None:
    endpoint, _, _ = server
    client = PersonalizerClient(endpoint, AzureKeyCredential("wrong"))
    with pytest.raises(ClientAuthenticationError):
        client.rank({"actions": ACTIONS})
