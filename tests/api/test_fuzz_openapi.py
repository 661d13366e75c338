"""Fuzz the API against its own OpenAPI document: no request may produce a 5xx."""

from __future__ import annotations

import tempfile
from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings

from dataflywheel.api.app import create_app
from dataflywheel.config import load_settings

_store = Path(tempfile.mkdtemp()) / "fuzz.db"
app = create_app(load_settings(db=f"sqlite:///{_store}"))
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case) -> None:
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.path}: {response.text[:300]}"
    if response.status_code >= 400:
        assert "error" in response.json(), response.text[:300]
