"""DELETE /v1/users/{id} and /v1/items/{id}: admin only, 204, then 404 and gone from the stats."""

from __future__ import annotations

import time

from sqlalchemy import select

from dataflywheel.keys import create_key
from dataflywheel.store import schema

EVENTS = [
    {"user_id": f"u{u}", "item_id": f"i{(u + n) % 12}", "type": "click", "timestamp": 1.7e9 + n}
    for u in range(12)
    for n in range(5)
]


def _load(client):  # type: ignore[no-untyped-def]
    answer = client.post("/v1/events", json={"events": EVENTS})
    assert answer.json()["accepted"] == len(EVENTS)


def test_deleting_a_user_answers_204_then_404(client) -> None:  # type: ignore[no-untyped-def]
    _load(client)
    assert client.get("/v1/users/u3").status_code == 200
    before = client.get("/v1/stats").json()
    client.get("/v1/recommendations", params={"user_id": "u3"})

    answer = client.delete("/v1/users/u3")
    assert answer.status_code == 204
    assert answer.content == b""

    assert client.get("/v1/users/u3").status_code == 404
    after = client.get("/v1/stats").json()
    assert after["events"] == before["events"] - 5
    assert after["events_by_type"]["click"] == before["events_by_type"]["click"] - 5
    assert after["users"] == before["users"] - 1
    again = client.delete("/v1/users/u3")
    assert again.status_code == 404
    assert again.json()["error"]["code"] == "not_found"
    assert again.json()["error"]["field"] == "user_id"


def test_a_deleted_item_is_not_served_on_the_next_request(client) -> None:  # type: ignore[no-untyped-def]
    _load(client)
    assert (
        client.post("/v1/models/train", json={"model": "itemknn", "budget": 5}).status_code == 200
    )
    served = client.get("/v1/recommendations", params={"user_id": "new", "k": 12}).json()
    assert "i4" in {i["item_id"] for i in served["items"]}

    assert client.delete("/v1/items/i4").status_code == 204

    assert client.get("/v1/items/i4").status_code == 404
    for user in ["new", *(f"u{u}" for u in range(12))]:
        answer = client.get("/v1/recommendations", params={"user_id": user, "k": 12}).json()
        assert "i4" not in {i["item_id"] for i in answer["items"]}
    assert client.get("/v1/items/i4/similar").status_code == 404


def test_erasure_needs_an_admin_key_and_audits_its_prefix(client) -> None:  # type: ignore[no-untyped-def]
    _load(client)
    store = client.app.state.wheel.store
    admin, ingest = create_key(store, "admin"), create_key(store, "ingest")
    time.sleep(2.1)  # the server looks at the keys every two seconds
    assert client.delete("/v1/users/u1").status_code == 401
    forbidden = client.delete("/v1/users/u1", headers={"Authorization": f"Bearer {ingest}"})
    assert forbidden.status_code == 403
    done = client.delete("/v1/users/u1", headers={"Authorization": f"Bearer {admin}"})
    assert done.status_code == 204
    with store.read() as conn:
        rows = (
            conn.execute(select(schema.audit_log).where(schema.audit_log.c.action == "erase_user"))
            .mappings()
            .all()
        )
    assert [r["actor"] for r in rows] == [admin[:8]]
    assert admin[8:] not in str(dict(rows[0]))
    assert "u1" not in str(dict(rows[0]))
