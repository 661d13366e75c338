"""Hostile requests: oversize and unauthenticated bodies, NUL characters, deep nesting,
foreign hosts and origins, non-JSON bodies. Each gets a 4xx JSON error, never a 500, and
a refused body is not read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dataflywheel as dfw
from dataflywheel.api.app import create_app
from dataflywheel.config import load_settings
from dataflywheel.ingest.validate import too_deep
from dataflywheel.keys import create_key
from helpers import start_server

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

MB = 1024 * 1024
JSON = {"content-type": "application/json"}
RANK = {"actions": [{"id": "a", "features": [{"x": 1}]}, {"id": "b", "features": [{"x": 2}]}]}


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _fill(template: str, value: str) -> str:
    return template.replace("@", value)


# --- bodies: the key before the body, the size limit on every route -------------------------


def _asgi(app: Any, method: str, path: str, headers: dict[str, str], total: int) -> tuple:
    """Send a request whose body streams in 1 MB chunks (``total`` bytes) straight to the ASGI
    app; (status, JSON body, bytes the app read)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        chunk = min(MB, total - read)
        read += chunk
        return {"type": "http.request", "body": b"x" * chunk, "more_body": read < total}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "scheme": "http",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, orjson.loads(body), read


ROUTES = [
    ("POST", "/v1/events"),
    ("POST", "/v1/items"),
    ("PUT", "/v1/users/u1"),
    ("POST", "/v1/recommendations"),
    ("POST", "/personalizer/rank"),
    ("POST", "/personalizer/multislot/rank"),
    ("POST", "/v1/triggers"),
]


@pytest.fixture
def keyed_app(tmp_path: Path) -> Iterator[tuple[Any, str]]:
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        key = create_key(wheel.store, "admin")
    app = create_app(load_settings(db=db, max_body_bytes=4 * MB))
    try:
        yield app, key
    finally:
        app.state.wheel.close()


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_body_without_key_is_401_before_a_byte_is_read(
    keyed_app: tuple[Any, str], method: str, path: str
) -> None:
    app, _ = keyed_app
    headers = {**JSON, "host": "127.0.0.1", "content-length": str(200 * MB)}
    status, body, read = _asgi(app, method, path, headers, 200 * MB)
    assert (status, read) == (401, 0)
    personalizer = path.startswith("/personalizer")
    assert body["error"]["code"] == ("Unauthorized" if personalizer else "unauthorized")
    chunked = {**JSON, "host": "127.0.0.1", "transfer-encoding": "chunked"}
    assert _asgi(app, method, path, chunked, 200 * MB)[::2] == (401, 0)


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_oversize_body_is_413_early_on_every_route(
    keyed_app: tuple[Any, str], method: str, path: str
) -> None:
    app, key = keyed_app
    auth = {**JSON, "host": "127.0.0.1", "authorization": f"Bearer {key}"}
    status, body, read = _asgi(app, method, path, {**auth, "content-length": str(200 * MB)}, 0)
    assert (status, read) == (413, 0)
    # No length declared (chunked): reading stops at the first chunk past the limit.
    status, body, read = _asgi(
        app, method, path, {**auth, "transfer-encoding": "chunked"}, 200 * MB
    )
    assert status == 413 and read <= 5 * MB, (status, read)
    assert body["error"]["code"] in ("too_large", "PayloadTooLarge")


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _send_partial(port: int, request_line: str, headers: dict[str, str], data: int) -> bytes:
    """Send headers declaring a huge body and only ``data`` bytes of it; the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"{request_line} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode())
        with contextlib.suppress(OSError):  # the server answered and closed first
            sock.sendall(b"x" * data)
        return sock.recv(65_536)


def test_real_server_refuses_a_200_mb_body_without_reading_it(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'flywheel.db'}"
    with dfw.open(db) as wheel:
        key = create_key(wheel.store, "admin")
    process, port = start_server(db)
    try:
        before = _rss_kb(process.pid)
        for path in ("/v1/items", "/personalizer/rank", "/v1/events"):
            started = time.perf_counter()
            declared = {"Content-Type": "application/json", "Content-Length": str(200 * MB)}
            answer = _send_partial(port, f"POST {path}", declared, 8 * MB)
            assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
            with_key = {**declared, "Authorization": f"Bearer {key}"}
            answer = _send_partial(port, f"POST {path}", with_key, 8 * MB)
            assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
            chunked = {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
            chunk = b"%x\r\n%s\r\n" % (MB, b"x" * MB)
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                head += "".join(f"{k}: {v}\r\n" for k, v in chunked.items())
                head += f"Authorization: Bearer {key}\r\n\r\n"
                sock.sendall(head.encode())
                with contextlib.suppress(OSError):
                    for _ in range(200):
                        sock.sendall(chunk)
                assert sock.recv(65_536).startswith(b"HTTP/1.1 413")
            assert time.perf_counter() - started < 10
        assert _rss_kb(process.pid) - before < 100_000  # KB: well under one 200 MB body
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- NUL characters, on both stores --------------------------------------------------------


@pytest.fixture
def open_client(store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(db=store_url))) as client:
        yield client


NUL_URLS = [
    ("PUT", "/v1/items/a%00b", {"categories": ["x"]}, "item_id"),
    ("GET", "/v1/items/a%00b", None, "item_id"),
    ("PUT", "/v1/users/a%00b", {}, "user_id"),
    ("GET", "/v1/users/a%00b", None, "user_id"),
    ("GET", "/v1/items/a%00b/similar", None, "item_id"),
    ("GET", "/v1/recommendations?user_id=a%00b", None, "user_id"),
    ("GET", "/v1/experiments/a%00b", None, "experiment_id"),
    ("POST", "/v1/models/a%00b/promote", None, "version"),
    ("GET", "/v1/labels/queue?task=a%00b", None, "task"),
]
NUL_BODIES = [
    ("POST", "/v1/items", {"items": [{"id": "a\x00b"}]}, "items.0.id"),
    (
        "POST",
        "/v1/users",
        {"users": [{"id": "u", "categories": ["a\x00"]}]},
        "users.0.categories.0",
    ),
    ("PUT", "/v1/items/i", {"attributes": {"k\x00": 1}}, "attributes.k\x00"),
    ("POST", "/v1/recommendations", {"user_id": "u\x00"}, "user_id"),
    ("POST", "/v1/recommendations", {"user_id": "u", "exclude": ["\x00"]}, "exclude.0"),
    ("POST", "/v1/triggers", {"name": "t\x00", "kind": "x"}, "name"),
    ("POST", "/v1/experiments", {"name": "e\x00", "arms": []}, "name"),
    ("POST", "/v1/labels", {"labels": [{"id": "c\x00", "value": 1}]}, "labels.0.id"),
]


@pytest.mark.parametrize(("method", "url", "body", "field"), NUL_URLS + NUL_BODIES)
def test_nul_is_422_naming_the_field(
    open_client: TestClient, method: str, url: str, body: Any, field: str
) -> None:
    response = open_client.request(method, url, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("url", "body", "target"),
    [
        ("/personalizer/rank", {**RANK, "eventId": "e\x00"}, "eventId"),
        ("/personalizer/rank", {**RANK, "contextFeatures": [{"k": "\x00"}]}, "contextFeatures.0.k"),
        ("/personalizer/events/e1/reward", {"value": "\x00"}, "value"),
        ("/personalizer/events/a%00b/reward", {"value": 1}, "eventId"),
        ("/deployments/d/personalizer/v1.0/events/a%00b/activate", None, "eventId"),
        ("/personalizer/multislot/rank", {"eventId": "e\x00"}, "eventId"),
        ("/personalizer/configurations/service", {"learningMode": "\x00"}, "learningMode"),
    ],
)
def test_nul_in_personalizer_bodies_is_a_bad_request(
    open_client: TestClient, url: str, body: Any, target: str
) -> None:
    """Personalizer answers every invalid argument with 400 BadRequest and its target, also
    when the guard refuses it before routing."""
    method = "PUT" if url.endswith("/service") else "POST"
    response = open_client.request(method, url, json=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"] == {
        "code": "BadRequest",
        "message": f"{target}: must not contain NUL characters",
        "target": target,
    }


def test_nul_free_requests_still_work(open_client: TestClient) -> None:
    assert open_client.put("/v1/items/a%01b", json={"categories": ["x"]}).status_code == 200
    assert open_client.get("/v1/items/a%01b").json()["categories"] == ["x"]
    assert open_client.post("/personalizer/rank", json=RANK).status_code == 201


# --- nesting depth -------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [33, 200, 5_000])
def test_deep_json_is_400_not_500(open_client: TestClient, depth: int) -> None:
    deep = _deep(depth)
    event = _fill('{"events":[{"user_id":"u","type":"click","context":@}]}', deep)
    response = open_client.post("/v1/events", content=event, headers=JSON)
    if response.status_code == 200:  # parsed: that event alone is refused, naming its field
        assert response.json()["rejected"][0]["field"] == "context"
        assert "32 levels" in response.json()["rejected"][0]["error"]
    else:
        assert response.status_code == 400 and response.json()["error"]["code"] == "too_deep"
    rank = _fill('{"contextFeatures":[@],"actions":[{"id":"a","features":[{"x":1}]}]}', deep)
    response = open_client.post("/personalizer/rank", content=rank, headers=JSON)
    assert response.status_code == 400 and "32 levels" in response.json()["error"]["message"]
    for method, url, body in (
        ("PUT", "/v1/items/i", _fill('{"attributes":@}', deep)),
        ("POST", "/v1/recommendations", _fill('{"user_id":"u","context":@}', deep)),
        ("POST", "/v1/triggers", _fill('{"name":"t","where":@}', deep)),
    ):
        response = open_client.request(method, url, content=body, headers=JSON)
        assert response.status_code == 400, (url, response.text)
        assert response.json()["error"]["code"] == "too_deep"


def test_depth_limit_is_configurable(sqlite_url: str) -> None:
    app = create_app(load_settings(db=sqlite_url, max_json_depth=40))
    with TestClient(app) as client:
        body = _fill('{"events":[{"user_id":"u","type":"click","context":@}]}', _deep(36))
        assert client.post("/v1/events", content=body, headers=JSON).json()["accepted"] == 1
        assert client.put("/v1/items/i", json={"attributes": json.loads(_deep(36))}).is_success


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TEXT = st.text(alphabet='ab[]{}"\\\x00:,', max_size=6)
_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | _TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(value=_JSON_VALUES, limit=st.integers(0, 8), indent=st.booleans())
def test_too_deep_agrees_with_a_parse(value: Any, limit: int, indent: bool) -> None:
    """Strings full of brackets, quotes and escapes do not fool the byte-level depth check."""
    raw = json.dumps(value, indent=1 if indent else None).encode()
    assert too_deep(raw, limit) == (_depth(value) > limit)


# --- hosts, origins and media types without keys -------------------------------------------


@pytest.fixture
def client(sqlite_url: str) -> Iterator[TestClient]:
    app = create_app(load_settings(db=sqlite_url, allowed_hosts=["flywheel.internal"]))
    with TestClient(app) as test_client:
        yield test_client


@pytest.mark.parametrize(
    "host",
    [
        "localhost",
        "localhost:8000",
        "127.0.0.1:8000",
        "127.9.9.9",
        "[::1]:8000",
        "[::1]",
        "LOCALHOST:1",
        "flywheel.internal:8000",
    ],
)
def test_loopback_hosts_are_served_without_keys(client: TestClient, host: str) -> None:
    assert client.get("/v1/stats", headers={"host": host}).status_code == 200


@pytest.mark.parametrize(
    "host", ["evil.com", "evil.com:8000", "127.0.0.1.evil.com", "localhost.evil.com", "[::2]"]
)
def test_foreign_hosts_are_refused_without_keys(client: TestClient, host: str) -> None:
    for method, path in (("GET", "/v1/stats"), ("POST", "/v1/events"), ("GET", "/")):
        response = client.request(
            method,
            path,
            headers={"host": host},
            json={"events": [{"user_id": "u", "type": "click"}]},
        )
        assert response.status_code == 421, (host, path)
        assert response.json()["error"]["code"] == "host_not_allowed"
    assert client.get("/v1/stats").json()["events"] == 0


def test_foreign_origins_are_refused_without_keys(client: TestClient) -> None:
    evil = client.post("/v1/models/rollback", headers={"origin": "http://evil.com"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "cross_origin"
    assert client.post("/v1/models/rollback", headers={"origin": "null"}).status_code == 403
    own = client.get("/v1/stats", headers={"origin": "http://127.0.0.1:8000"})
    assert own.status_code == 200


@pytest.mark.parametrize(
    "media",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        None,
    ],
)
def test_json_routes_refuse_other_media_types(client: TestClient, media: str | None) -> None:
    body = orjson.dumps({"events": [{"user_id": "u", "type": "click"}]})
    headers = {} if media is None else {"content-type": media}
    for path in ("/v1/events", "/v1/items", "/personalizer/rank"):
        response = client.post(path, content=body, headers=headers)
        assert response.status_code == 415, (path, media)
        assert response.json()["error"]["code"] == "unsupported_media_type"
    assert client.get("/v1/stats").json()["events"] == 0
    ok = client.post(
        "/v1/events", content=body, headers={"content-type": "Application/JSON; charset=utf-8"}
    )
    assert ok.json()["accepted"] == 1


def test_with_a_key_hosts_are_not_restricted(keyed_app: tuple[Any, str]) -> None:
    app, key = keyed_app
    with TestClient(app) as client:
        auth = {"authorization": f"Bearer {key}", "host": "flywheel.example.com"}
        assert client.get("/v1/stats", headers=auth).status_code == 200
        body = orjson.dumps({"events": [{"user_id": "u", "type": "click"}]})
        untyped = client.post("/v1/events", content=body, headers=auth)
        assert untyped.json()["accepted"] == 1  # a key holder may leave the type out
        typed = client.post(
            "/v1/events", content=body, headers={**auth, "content-type": "text/plain"}
        )
        assert typed.status_code == 415
        assert client.get("/v1/stats", headers={"host": "evil.com"}).status_code == 401


def test_real_server_refuses_a_rebinding_host(tmp_path: Path) -> None:
    process, port = start_server(f"sqlite:///{tmp_path / 'flywheel.db'}")
    try:
        for host, status in (("evil.com", 421), (f"127.0.0.1:{port}", 200), ("localhost", 200)):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(f"GET /v1/stats HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                assert sock.recv(65_536).startswith(f"HTTP/1.1 {status}".encode()), host
    finally:
        process.terminate()
        process.wait(timeout=30)


# --- items and users: bounded attributes and categories ------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"attributes": {f"a{i}": i for i in range(257)}}, "attributes"),
        ({"attributes": {"x" * 257: 1}}, "attributes." + "x" * 40),
        ({"attributes": {"": 1}}, "attributes."),
        ({"attributes": {"text": "x" * 70_000}}, "attributes"),
        ({"categories": [f"c{i}" for i in range(101)]}, "categories"),
        ({"categories": ["ok", "x" * 257]}, "categories.1"),
        ({"categories": [""]}, "categories.0"),
    ],
)
def test_entity_limits(client: TestClient, body: dict[str, Any], field: str) -> None:
    for url in ("/v1/items/i", "/v1/users/u"):
        response = client.put(url, json=body)
        assert response.status_code == 422, response.text
        assert response.json()["error"]["field"] == field
    batch = client.post("/v1/items", json={"items": [{"id": "i", **body}]})
    assert batch.status_code == 422 and batch.json()["error"]["field"] == f"items.0.{field}"


def test_entity_limits_allow_the_maximum(client: TestClient) -> None:
    body = {
        "attributes": {f"a{i}": "x" * 200 for i in range(256)},
        "categories": ["c" * 256] * 100,
    }
    assert client.put("/v1/items/i", json=body).status_code == 200
