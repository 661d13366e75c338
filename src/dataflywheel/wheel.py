"""The Python API: one object over a store that the CLI and the HTTP server use as well."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dataflywheel.config import Settings, load_settings
from dataflywheel.ingest.service import Batch, Ingestor, IngestResult
from dataflywheel.store.store import Store


class Flywheel:
    """A handle on one flywheel store: ingest events, serve, train, and report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings)
        self.ingestor = Ingestor(self.store)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Flywheel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Ingestion -------------------------------------------------------------------------------

    def track(
        self,
        *,
        user_id: str,
        type: str,
        item_id: str | None = None,
        value: float = 1.0,
        timestamp: float | str | None = None,
        event_id: str | None = None,
        recommendation_id: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> IngestResult:
        """Record one event; raises :class:`~dataflywheel.errors.ValidationError` if invalid."""
        raw = {
            "user_id": user_id,
            "type": type,
            "item_id": item_id,
            "value": value,
            "timestamp": timestamp,
            "event_id": event_id,
            "recommendation_id": recommendation_id,
            "context": dict(context) if context is not None else None,
        }
        now = time.time()
        event = self.ingestor.validator.validate(
            {k: v for k, v in raw.items() if v is not None}, now
        )
        inserted = self.ingestor.commit([Batch([event], 0, now)])[0]
        return IngestResult(accepted=inserted, duplicates=1 - inserted)

    def track_many(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Record many events (same shape as the HTTP API); invalid ones are reported."""
        return self.ingestor.ingest([dict(e) for e in events])

    def upsert_items(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.store.upsert_entities("items", records, time.time())

    def upsert_users(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.store.upsert_entities("users", records, time.time())

    def stats(self) -> dict[str, Any]:
        return self.store.stats()


def open(url: str | None = None, **settings: Any) -> Flywheel:
    """Open (creating and migrating if needed) the store at ``url`` or ``FLYWHEEL_DB``."""
    return Flywheel(load_settings(db=url, **settings))
