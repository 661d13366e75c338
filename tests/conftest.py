"""Shared fixtures: stores on SQLite and on the real PostgreSQL server, real server processes."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

import dataflywheel as dfw
from helpers import IN_CI

PG_ADMIN = os.environ.get("FLYWHEEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def _postgres_available() -> str | None:
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of the PostgreSQL server; fails in CI when it is missing, else skips."""
    problem = _postgres_available()
    if problem is not None:
        if IN_CI:
            pytest.fail(f"PostgreSQL is required in CI but unreachable: {problem}")
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN}: {problem}")
    return PG_ADMIN


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    name = f"dfw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    base = postgres_server.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(postgres_server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flywheel.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'flywheel.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def wheel(store_url: str) -> Iterator[dfw.Flywheel]:
    handle = dfw.open(store_url)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of Debian's chromium; required in CI, a visible skip elsewhere."""
    path = shutil.which("chromium")
    if path is None:
        if IN_CI:
            pytest.fail("chromium is required in CI (.ci/run installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium); browser test skipped")
    return path
