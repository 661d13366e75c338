"""Engines for SQLite (embedded default, WAL) and PostgreSQL from a store URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from dataflywheel.errors import ConfigError
from dataflywheel.store.urls import redact_url

# Write transactions ask for this execution option so SQLite takes the write lock up front:
# a deferred transaction that reads and then writes can fail with SQLITE_BUSY under concurrency.
IMMEDIATE = {"sqlite_begin": "BEGIN IMMEDIATE"}


def normalize_url(url: str) -> str:
    """Map the contract's plain ``postgresql://`` URLs to the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def create_store_engine(url: str, *, synchronous: str = "FULL") -> Engine:
    """An engine for ``url``; SQLite gets WAL, a busy timeout and explicit transactions."""
    try:
        parsed = make_url(normalize_url(url))
    except ArgumentError as exc:
        # Neither the URL nor the parser's message (some versions quote it) is echoed: what does
        # not parse cannot be told apart from a password in it.
        raise ConfigError(
            "invalid store URL: expected sqlite:///PATH or postgresql://USER@HOST/DB", field="db"
        ) from exc
    # The drivers installed with the package; another one would fail on import, deep inside.
    backend = (parsed.get_backend_name(), parsed.get_driver_name())
    if backend == ("sqlite", "pysqlite"):
        return _sqlite_engine(parsed.render_as_string(hide_password=False), synchronous)
    if backend == ("postgresql", "psycopg"):
        return create_engine(parsed, pool_size=8, max_overflow=8, pool_pre_ping=True)
    raise ConfigError(
        f"unsupported store URL {redact_url(repr(url))}: use sqlite:/// or postgresql://",
        field="db",
    )


def _sqlite_engine(url: str, synchronous: str) -> Engine:
    path = url.removeprefix("sqlite:///")
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA cache_size=-131072")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))

    return engine
