"""The composition root: the one place where the engine's parts are built and wired.

:class:`Flywheel` is the Python API, and the CLI and the HTTP server use the same object;
:func:`compose_server` adds what only a server process runs (the group-commit writer, the key
ring, the background loop with isolated training). Nothing below this module builds another
part's objects (docs/architecture.md).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from dataflywheel.config import Settings, load_settings
from dataflywheel.ingest.service import Batch, GroupCommitWriter, Ingestor, IngestResult
from dataflywheel.keys import KeyRing
from dataflywheel.learn.registry import Registry
from dataflywheel.learn.trainer import Trainer
from dataflywheel.store.store import Store

if TYPE_CHECKING:
    from dataflywheel.loop.scheduler import Loop, LoopThread
    from dataflywheel.serve.service import RecommendationService

# The loop, serving and insight (scipy.stats, scikit-learn) are imported on first use, so that
# ingestion-only work (`flywheel import`, the CLI's help) starts in a fraction of the time.


class Flywheel:
    """A handle on one flywheel store: ingest events, serve, train, and report."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = Store(settings)
        self.ingestor = Ingestor(self.store)
        self.registry = Registry(self.store)
        self.trainer = Trainer(self.store, self.registry, settings.artifacts_dir())
        self._serving: RecommendationService | None = None

    @cached_property
    def loop(self) -> Loop:
        """The background loop's steps (retrain, gates, promotion), created on first use."""
        from dataflywheel.loop.scheduler import Loop

        return Loop(self.store, self.registry, self.trainer, self.settings)

    @cached_property
    def keys(self) -> KeyRing:
        """The store's API keys (an empty ring leaves a loopback server open)."""
        return KeyRing(self.store)

    @property
    def serving(self) -> RecommendationService:
        """The serving state (champion, histories, catalogue), created on first use."""
        if self._serving is None:
            from dataflywheel.serve.service import RecommendationService

            self._serving = RecommendationService(self.store, self.registry, self.settings)
        return self._serving

    def close(self) -> None:
        if self._serving is not None:
            self._serving.close()
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
        result = IngestResult()
        result.settle(1, self.ingestor.commit([Batch([event], 0, now)])[0])
        return result

    def track_many(self, events: Iterable[Mapping[str, Any]]) -> IngestResult:
        """Record many events (same shape as the HTTP API); invalid ones are reported."""
        return self.ingestor.ingest([dict(e) for e in events])

    def upsert_items(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Create or update items; this process serves them from its next request on."""
        count = self.store.upsert_entities("items", records, time.time())
        if self._serving is not None:
            self._serving.catalog.invalidate()
        return count

    def upsert_users(self, records: Sequence[Mapping[str, Any]]) -> int:
        return self.store.upsert_entities("users", records, time.time())

    def stats(self) -> dict[str, Any]:
        self.flush()
        return self.store.stats()

    def flush(self) -> None:
        """Wait until every impression logged so far is stored."""
        if self._serving is not None:
            self._serving.impressions.flush()

    # Serving ---------------------------------------------------------------------------------

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        context: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Top-k items for ``user_id`` (same object as ``GET /v1/recommendations``)."""
        return self.serving.recommend(
            user_id,
            k,
            context=context,
            item_filter=filter,
            exclude=exclude,
            exclude_consumed=exclude_consumed,
            now=now,
        )

    def recommend_many(
        self,
        user_ids: Sequence[str],
        k: int = 10,
        *,
        context: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | Sequence[float] | None = None,
    ) -> list[dict[str, Any]]:
        """One :meth:`recommend` answer per user, in order, served in one pass (``now``: one time
        for all, or one per user)."""
        return self.serving.recommend_many(
            user_ids,
            k,
            context=context,
            item_filter=filter,
            exclude=exclude,
            exclude_consumed=exclude_consumed,
            now=now,
        )

    def rank(
        self,
        user_id: str,
        candidates: Sequence[str],
        k: int | None = None,
        *,
        context: Mapping[str, Any] | None = None,
        filter: Mapping[str, Any] | None = None,
        exclude: Sequence[str] = (),
        exclude_consumed: bool = True,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Only the ``candidates`` (item ids), ranked for ``user_id`` (the best ``k``, or all):
        the same object as ``POST /v1/recommendations`` with ``candidates``."""
        return self.serving.rank(
            user_id,
            candidates,
            k,
            context=context,
            item_filter=filter,
            exclude=exclude,
            exclude_consumed=exclude_consumed,
            now=now,
        )

    def similar(self, item_id: str, k: int = 10) -> dict[str, Any]:
        return self.serving.similar(item_id, k)

    # Learning --------------------------------------------------------------------------------

    def train(
        self,
        model: str = "auto",
        budget: float | None = None,
        *,
        now: float | None = None,
        engine: str | None = None,
        spark_master: str | None = None,
    ) -> dict[str, Any]:
        """Snapshot, search/fit and register a model version (the first becomes champion);
        ``engine="spark"`` fits implicit ALS in Spark MLlib instead of the local search."""
        from dataflywheel.learn.train_job import train

        version = train(
            self.store,
            self.registry,
            self.trainer,
            self.settings,
            model,
            budget,
            now=now,
            engine=engine,
            spark_master=spark_master,
        )
        self._champion_changed()
        return version

    def evaluate(self) -> list[dict[str, Any]]:
        """Leaderboard of the registered configurations on today's temporal holdout."""
        return self.trainer.leaderboard()

    def models(self) -> list[dict[str, Any]]:
        return self.registry.versions()

    def promote(self, version: str, reason: str = "manual promotion") -> dict[str, Any]:
        from dataflywheel.experiments.store import guard_promotion

        guard_promotion(self.store, version)
        promoted = self.registry.promote(version, reason)
        self._champion_changed()
        return promoted

    def rollback(self, reason: str = "manual rollback") -> dict[str, Any]:
        from dataflywheel.experiments.store import guard_promotion

        guard_promotion(self.store, None)
        restored = self.registry.rollback(reason)
        self._champion_changed()
        return restored

    def _champion_changed(self) -> None:
        if self._serving is not None:
            self._serving.invalidate()

    # Insight ---------------------------------------------------------------------------------

    def kpis(
        self, start: str | None = None, end: str | None = None, grain: str = "day"
    ) -> dict[str, Any]:
        """The ``GET /v1/kpis`` object: daily (or weekly, monthly) KPIs over a date range."""
        from dataflywheel import insight

        self.flush()
        return insight.kpis(self.store, start, end, grain)

    def health(self) -> dict[str, Any]:
        """The ``GET /v1/health/flywheel`` object: a verdict per flywheel condition."""
        from dataflywheel import insight

        self.flush()
        return insight.health(self.store)

    def run_loop_once(self, now: float | None = None) -> dict[str, Any]:
        """One step of the background loop: retrain if due, gate, promote or keep."""
        self.flush()
        outcome = self.loop.run_once(now)
        self._champion_changed()
        return outcome


def open(url: str | None = None, **settings: Any) -> Flywheel:
    """Open (creating and migrating if needed) the store at ``url`` or ``FLYWHEEL_DB``."""
    return Flywheel(load_settings(db=url, **settings))


@dataclass
class Server:
    """What one HTTP server process runs: the Flywheel, a writer that group-commits events, the
    key ring, and the background loop (started by the server when it runs the loop)."""

    wheel: Flywheel
    writer: GroupCommitWriter
    keys: KeyRing
    loop: LoopThread

    def close(self) -> None:
        self.writer.close()
        self.wheel.close()


def compose_server(settings: Settings) -> Server:
    """The parts of a server process over the store in ``settings``. Its loop trains in a child
    process (:mod:`dataflywheel.learn.train_job`), so a fit cannot take serving down."""
    from dataflywheel.loop.scheduler import Loop, LoopThread

    wheel = Flywheel(settings)
    loop = Loop(wheel.store, wheel.registry, wheel.trainer, settings, isolated=True)
    return Server(wheel, GroupCommitWriter(wheel.ingestor), wheel.keys, LoopThread(loop))
