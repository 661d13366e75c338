"""An in-process client on the real FastAPI app and store (SQLite and PostgreSQL)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest

from dataflywheel.api.app import create_app
from dataflywheel.config import load_settings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from fastapi.testclient import TestClient


@pytest.fixture
def client(store_url: str) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(db=store_url))) as test_client:
        yield test_client
