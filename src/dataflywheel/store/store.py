"""The store: one object over the engine that every service (ingest, learn, serve...) shares."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Literal

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from dataflywheel.config import Settings
from dataflywheel.errors import ConfigError
from dataflywheel.store import schema
from dataflywheel.store.bulk import insert_keys, select_keys
from dataflywheel.store.engine import IMMEDIATE, create_store_engine
from dataflywheel.store.migrate import upgrade
from dataflywheel.store.urls import redact_url

Kind = Literal["users", "items"]
_TABLES: dict[str, tuple[Table, str]] = {
    "users": (schema.users, "user_id"),
    "items": (schema.items, "item_id"),
}
_CACHE_LIMIT = 2_000_000


def dialect_insert(conn: Connection, table: Table) -> Any:
    """The dialect's INSERT construct, which offers ``on_conflict_do_*`` on both backends."""
    module = postgresql if conn.dialect.name == "postgresql" else sqlite
    return module.insert(table)


@functools.cache
def _ingest_upsert(dialect: str) -> Any:
    """The day's counter upsert, built once: SQLAlchemy keys its compiled-SQL cache by walking
    a statement, and a statement built per group commit cost more than running it."""
    module = postgresql if dialect == "postgresql" else sqlite
    table = schema.ingest_daily
    insert = module.insert(table)
    return insert.on_conflict_do_update(
        index_elements=["date"],
        set_={
            name: table.c[name] + insert.excluded[name]
            for name in ("accepted", "duplicates", "rejected")
        },
    )


class Store:
    """Owns the engine, applies migrations on open and maps external ids to dense ids."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.engine = create_store_engine(settings.db, synchronous=settings.sqlite_synchronous)
        try:
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            reason = getattr(exc, "orig", None) or exc
            message = f"cannot open store {redact_url(settings.db)}: {redact_url(str(reason))}"
            raise ConfigError(message, field="db") from exc
        self._ids: dict[str, dict[str, int]] = {"users": {}, "items": {}}
        self._ids_lock = threading.Lock()
        self._created = {"users": 0, "items": 0}

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction (SQLite takes its write lock at BEGIN)."""
        with self.engine.connect().execution_options(**IMMEDIATE) as conn, conn.begin():
            yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def latest_event_id(self) -> int:
        """The highest ``events.id`` stored (0 when there is none): the watermark of "now"."""
        with self.read() as conn:
            return int(conn.execute(select(func.max(schema.events.c.id))).scalar_one() or 0)

    def snapshot_watermark(self, snapshot_id: str) -> int | None:
        """The highest event id in a recorded snapshot (None for an unknown snapshot)."""
        s = schema.snapshots.c
        with self.read() as conn:
            found = conn.execute(select(s.watermark).where(s.id == snapshot_id)).scalar()
        return None if found is None else int(found)

    # Dense ids -----------------------------------------------------------------------------

    def resolve_ids(
        self, conn: Connection, kind: Kind, keys: Iterable[str], now: float
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Dense ids for ``keys``, creating rows for unseen ones inside ``conn``'s transaction.

        Returns (all ids, the newly learned ones); call :meth:`remember_ids` with the second
        after the transaction commits, so a rollback never leaves a phantom id in the cache.
        """
        cache = self._ids[kind]
        found: dict[str, int] = {}
        missing: list[str] = []
        for key in set(keys):
            idx = cache.get(key)
            if idx is None:
                missing.append(key)
            else:
                found[key] = idx
        learned: dict[str, int] = {}
        if missing:
            table, column = _TABLES[kind]
            self._created[kind] += insert_keys(conn, table.name, column, missing, now)
            learned = self._select_ids(conn, kind, missing)
            found.update(learned)
        return found, learned

    def remember_ids(self, kind: Kind, learned: Mapping[str, int]) -> None:
        with self._ids_lock:
            cache = self._ids[kind]
            if len(cache) + len(learned) > _CACHE_LIMIT:
                cache.clear()
            cache.update(learned)

    def ids_created(self, kind: Kind) -> int:
        """How many rows of ``kind`` this process's events have created (a rolled-back
        transaction may count too): a change tells the serving catalogue to look for items."""
        return self._created[kind]

    def _select_ids(self, conn: Connection, kind: Kind, keys: Sequence[str]) -> dict[str, int]:
        table, column = _TABLES[kind]
        return select_keys(conn, table.name, column, keys)

    def lookup_ids(self, kind: Kind, keys: Sequence[str]) -> dict[str, int]:
        """Dense ids of known ``keys`` (unknown ones are absent), without creating rows."""
        cache = self._ids[kind]
        out = {k: cache[k] for k in keys if k in cache}
        missing = [k for k in keys if k not in out]
        if missing:
            with self.read() as conn:
                learned = self._select_ids(conn, kind, missing)
            self.remember_ids(kind, learned)
            out.update(learned)
        return out

    # Users and items -----------------------------------------------------------------------

    def upsert_entities(self, kind: Kind, records: Sequence[Mapping[str, Any]], now: float) -> int:
        """Insert or update users/items; only the fields present in a record are changed."""
        table, column = _TABLES[kind]
        with self.write() as conn:
            for record in records:
                values = {k: v for k, v in record.items() if k != "id"}
                values.setdefault("created_at", now)
                insert = dialect_insert(conn, table).values(
                    {column: record["id"], "hidden": False, "updated_at": now, **values}
                )
                updates = {k: insert.excluded[k] for k in values if k != "created_at"}
                updates["updated_at"] = insert.excluded.updated_at
                if "created_at" in record:
                    updates["created_at"] = insert.excluded.created_at
                conn.execute(insert.on_conflict_do_update(index_elements=[column], set_=updates))
        return len(records)

    def get_entity(self, kind: Kind, key: str) -> dict[str, Any] | None:
        table, column = _TABLES[kind]
        with self.read() as conn:
            row = conn.execute(select(table).where(table.c[column] == key)).mappings().first()
        if row is None:
            return None
        return {
            "id": row[column],
            "attributes": row["attributes"] or {},
            "categories": row["categories"] or [],
            "hidden": bool(row["hidden"]),
            "created_at": row["created_at"],
        }

    # Counts ----------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """The object of ``GET /v1/stats``."""
        with self.read() as conn:
            by_type: dict[str, int] = dict(
                conn.execute(
                    select(schema.events.c.type, func.count()).group_by(schema.events.c.type)
                ).all()
            )

            def count(table: Table) -> int:
                return int(conn.execute(select(func.count()).select_from(table)).scalar_one())

            return {
                "events": sum(by_type.values()),
                "events_by_type": {str(k): int(v) for k, v in sorted(by_type.items())},
                "users": count(schema.users),
                "items": count(schema.items),
                "impressions": count(schema.impressions),
                "models": count(schema.models),
            }

    def record_ingest(
        self, conn: Connection, date: str, accepted: int, duplicates: int, rejected: int
    ) -> None:
        """Add one batch's outcome to the day's data-quality counters."""
        conn.execute(
            _ingest_upsert(conn.dialect.name),
            {"date": date, "accepted": accepted, "duplicates": duplicates, "rejected": rejected},
        )
