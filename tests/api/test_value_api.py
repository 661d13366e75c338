"""GET /v1/value on the real app and store, and ``flywheel value --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import dataflywheel as dfw
from dataflywheel.keys import create_key
from value_data import worlds_with_noise

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient

FLYWHEEL = str(Path(sys.executable).with_name("flywheel"))


def test_value_is_computed_once_then_answered_from_the_cache(client: TestClient) -> None:
    wheel = client.app.state.wheel  # type: ignore[attr-defined]
    worlds_with_noise(wheel, users=60)
    first = client.get("/v1/value")
    assert first.status_code == 200, first.text
    document = first.json()
    assert document["cached"] is False and document["stale"] is False
    assert {"curve", "next_doubling", "slices", "advice"} <= set(document)
    assert {s["name"] for s in document["slices"]} >= {"click", "view"}
    again = client.get("/v1/value").json()
    assert again["cached"] is True and again["computed_at"] == document["computed_at"]


def test_value_needs_admin_and_a_valid_budget(client: TestClient) -> None:
    store = client.app.state.wheel.store  # type: ignore[attr-defined]
    admin, ingest = create_key(store, "admin"), create_key(store, "ingest")
    client.app.state.keys.invalidate()  # type: ignore[attr-defined]
    assert client.get("/v1/value").status_code == 401
    denied = client.get("/v1/value", headers={"Authorization": f"Bearer {ingest}"})
    assert denied.status_code == 403
    auth = {"Authorization": f"Bearer {admin}"}
    for budget in ("0", "-5", "nan", "abc"):
        bad = client.get(f"/v1/value?budget={budget}&refresh=true", headers=auth)
        assert bad.status_code == 422, (budget, bad.text)
        assert bad.json()["error"]["field"].endswith("budget")
    empty = client.get("/v1/value", headers=auth)
    assert empty.status_code == 409 and "need 20" in empty.json()["error"]["message"]


def test_cli_json_prints_one_document(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'f.db'}"
    with dfw.open(db) as wheel:
        worlds_with_noise(wheel, users=60)
    result = subprocess.run(
        [FLYWHEEL, "value", "--db", db, "--budget", "60", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=True,
    )
    document = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert {"curve", "next_doubling", "slices", "advice"} <= set(document)
    assert list((tmp_path / "f.artifacts").glob("value-*.json"))
    shown = subprocess.run(
        [FLYWHEEL, "value", "--db", db, "--cached"],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        check=True,
    )
    assert "value of data" in shown.stdout and "next doubling" in shown.stdout
