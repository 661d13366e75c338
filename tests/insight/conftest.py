"""Fixtures for insight: the small hand-built store, an app with the insight router, a CLI."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
import typer

import dataflywheel as dfw
from dataflywheel.api import insight as insight_api
from dataflywheel.api.app import create_app
from dataflywheel.cli import insight as insight_cli
from dataflywheel.config import load_settings
from insight.handbuilt import fill

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def small_any(wheel: dfw.Flywheel) -> dfw.Flywheel:
    """The hand-built store of handbuilt.py, on SQLite and on PostgreSQL."""
    fill(wheel.store)
    return wheel


@pytest.fixture
def small(sqlite_url: str) -> Iterator[dfw.Flywheel]:
    """The hand-built store of handbuilt.py, on SQLite (for tests not about the dialect)."""
    with dfw.open(sqlite_url) as handle:
        fill(handle.store)
        yield handle


@pytest.fixture
def client_for() -> Iterator[object]:
    """Build a TestClient with the insight router on the store at a URL."""
    clients: list[TestClient] = []

    def make(url: str) -> TestClient:
        app = create_app(load_settings(db=url))
        if not any(getattr(r, "path", None) == "/v1/kpis" for r in app.routes):
            app.include_router(insight_api.router)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    insight_cli.register(app)
    return app
