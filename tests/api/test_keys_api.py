"""GET /v1/keys and DELETE /v1/keys/{prefix} on the real app; revocation across two servers."""

from __future__ import annotations

import http.client
import json
import os
import signal
import time
import warnings

import pytest
from sqlalchemy import update

from dataflywheel.config import load_settings
from dataflywheel.keys import PREFIX_LENGTH, _hash, create_key
from dataflywheel.store import schema
from dataflywheel.store.store import Store
from helpers import start_server

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

# Revocations reach every server on the store within this time (docs/api.md, "Keys").
BOUND = 0.5


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_list_and_revoke_over_http(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    admin, ingest = create_key(store, "admin"), create_key(store, "ingest")
    client.app.state.keys.invalidate()  # type: ignore[attr-defined]

    assert client.get("/v1/keys", headers=_auth(ingest)).status_code == 403
    listed = client.get("/v1/keys", headers=_auth(admin))
    assert listed.status_code == 200
    rows = listed.json()["keys"]
    assert [(k["prefix"], k["scope"], k["status"]) for k in rows] == [
        (admin[:PREFIX_LENGTH], "admin", "active"),
        (ingest[:PREFIX_LENGTH], "ingest", "active"),
    ]
    assert admin not in listed.text and ingest not in listed.text
    assert _hash(admin) not in listed.text

    assert client.get("/v1/stats", headers=_auth(ingest)).status_code == 200
    gone = client.delete(f"/v1/keys/{ingest[:PREFIX_LENGTH]}", headers=_auth(admin))
    assert gone.status_code == 204 and gone.content == b""
    refused = client.get("/v1/stats", headers=_auth(ingest))  # at once, in this process
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"
    assert "revoked" in refused.json()["error"]["message"]
    refused_fast_path = client.get("/v1/recommendations?user_id=u", headers=_auth(ingest))
    assert refused_fast_path.status_code == 401

    again = client.delete(f"/v1/keys/{ingest[:PREFIX_LENGTH]}", headers=_auth(admin))
    assert again.status_code == 404 and again.json()["error"]["field"] == "prefix"
    unknown = client.delete("/v1/keys/fw_unknown9", headers=_auth(admin))
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    bad = client.delete("/v1/keys/nope", headers=_auth(admin))
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "prefix"


def test_an_ingest_key_is_refused_an_admin_route_before_its_body_is_read(
    client: TestClient,
) -> None:
    store: Store = client.app.state.wheel.store  # type: ignore[attr-defined]
    ingest = create_key(store, "ingest")
    headers = {**_auth(ingest), "Content-Type": "application/json"}
    # Whatever the body holds, the answer is the 403: nothing of an admin route's contract
    # (its body's shape, its limits) is told to a key that may not call it.
    for body in (b"{not json", b"[" * 10_000 + b"]" * 10_000, b'{"name": 1}'):
        refused = client.post("/v1/experiments", content=body, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "forbidden"
    # Ingest routes with a body still take the key.
    upserted = client.put("/v1/items/i1", json={"categories": ["a"]}, headers=_auth(ingest))
    assert upserted.status_code == 200, upserted.text


def test_an_ambiguous_prefix_is_a_422_with_the_count(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    admin = create_key(store, "admin")
    with store.write() as conn:
        for tail in ("A", "B", "C"):
            legacy = ("fw_Dup45" + tail * 40)[:46]  # rows from before the 12-character prefix
            conn.execute(
                schema.api_keys.insert().values(
                    key_hash=_hash(legacy), prefix=legacy[:8], scope="ingest", created_at=1.0
                )
            )
    client.app.state.keys.invalidate()  # type: ignore[attr-defined]
    response = client.delete("/v1/keys/fw_Dup45", headers=_auth(admin))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["matches"] == 3 and "matches 3 keys" in error["message"]


def test_an_expired_key_is_told_it_expired(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    key = create_key(store, "ingest", expires_days=1)
    with store.write() as conn:
        conn.execute(update(schema.api_keys).values(expires_at=time.time() - 60))
    client.app.state.keys.invalidate()  # type: ignore[attr-defined]
    for response in (
        client.get("/v1/stats", headers=_auth(key)),
        client.post("/v1/events", json={"events": []}, headers=_auth(key)),
    ):
        assert response.status_code == 401
        assert "expired at" in response.json()["error"]["message"]


def _status(port: int, method: str, path: str, key: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=_auth(key))
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.slow
def test_a_revocation_through_one_server_reaches_another_within_the_bound(
    store_url: str,
) -> None:
    store = Store(load_settings(db=store_url))
    admin, ingest = create_key(store, "admin"), create_key(store, "ingest")
    store.close()
    env = {**os.environ, "FLYWHEEL_LOOP_ENABLED": "false"}
    a, port_a = start_server(store_url, env)
    try:
        b, port_b = start_server(store_url, env)
        try:
            assert _status(port_b, "GET", "/v1/stats", ingest) == 200  # B has the key cached
            assert _status(port_a, "DELETE", f"/v1/keys/{ingest[:PREFIX_LENGTH]}", admin) == 204
            assert _status(port_a, "GET", "/v1/stats", ingest) == 401  # at once on A
            # On B: refused by every request sent more than the bound after the commit.
            time.sleep(BOUND + 0.05)
            assert _status(port_b, "GET", "/v1/stats", ingest) == 401
            assert _status(port_b, "GET", "/v1/recommendations?user_id=u", ingest) == 401
            assert _status(port_b, "GET", "/v1/stats", admin) == 200
            listed = http.client.HTTPConnection("127.0.0.1", port_b, timeout=10)
            listed.request("GET", "/v1/keys", headers=_auth(admin))
            keys = json.loads(listed.getresponse().read())["keys"]
            assert {k["prefix"]: k["status"] for k in keys}[ingest[:PREFIX_LENGTH]] == "revoked"
        finally:
            os.killpg(b.pid, signal.SIGTERM)
            b.wait(30)
    finally:
        os.killpg(a.pid, signal.SIGTERM)
        a.wait(30)
