"""Serve-time side of experiments: which arm a user is in, and the models arms serve.

The running experiment and the set of loaded model versions are cached and re-read at most once
a second, so routing adds a hash and a dict lookup to a request, not a query.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from dataflywheel.experiments.assignment import assign
from dataflywheel.experiments.tables import experiments
from dataflywheel.learn.models import Recommender, load_model
from dataflywheel.learn.registry import Registry
from dataflywheel.store.store import Store

REFRESH_SECONDS = 1.0


@dataclass(frozen=True)
class Route:
    """Where one request goes: the experiment, the user's arm and the arms' definitions."""

    experiment_id: str
    kind: str
    arm: str
    arms: tuple[dict[str, Any], ...]

    def definition(self) -> dict[str, Any]:
        """The arm this request serves (for interleaving: the first arm, team A)."""
        return next(a for a in self.arms if a["name"] == self.arm) if self.kind == "ab" else {}


class ModelCache:
    """Loaded artifacts of the versions that serve beside the champion (arms, shadows)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._models: dict[str, tuple[Recommender, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> tuple[Recommender, dict[str, Any]]:
        """The model of ``version`` and its matrix parameters (ModelError if unusable)."""
        with self._lock:
            cached = self._models.get(version)
            if cached is None:
                entry = self.registry.get(version)
                cached = (load_model(Path(entry["artifact"])), entry["params"].get("matrix", {}))
                self._models[version] = cached
            return cached


class ArmRouter:
    """Assigns users to the running experiment's arms by a salted hash."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._experiment: dict[str, Any] | None = None
        self._checked_at = -float("inf")
        self._lock = threading.Lock()

    def invalidate(self) -> None:
        """Re-read the running experiment on the next request (after a change in this process)."""
        self._checked_at = -float("inf")

    def running(self) -> dict[str, Any] | None:
        now = time.monotonic()
        if now - self._checked_at >= REFRESH_SECONDS:
            with self._lock:
                x = experiments.c
                with self.store.read() as conn:
                    row = conn.execute(
                        select(x.id, x.kind, x.arms, x.salt).where(x.status == "running")
                    ).first()
                self._experiment = None if row is None else dict(row._mapping)
                self._checked_at = now
        return self._experiment

    def route(self, user_id: str) -> Route | None:
        """The user's arm in the running experiment, or None when nothing runs."""
        experiment = self.running()
        if experiment is None:
            return None
        arms = tuple(experiment["arms"])
        if experiment["kind"] == "interleaving":
            arm = "interleaved"
        else:
            arm = assign(user_id, experiment["salt"], [(a["name"], a["weight"]) for a in arms])
        return Route(experiment["id"], experiment["kind"], arm, arms)
