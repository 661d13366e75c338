"""The engine as the simulator sees it: only what a product could call through the public API.

:class:`EmbeddedEngine` drives a store through the Python API (``dataflywheel.open``);
:class:`~dataflywheel.simulate.http.HttpEngine` drives a running server. Both return the
engine's own answers, so every impression, model version and promotion is the engine's doing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import dataflywheel as dfw
from dataflywheel.errors import ConfigError, FlywheelError

__all__ = ["EmbeddedEngine", "Engine", "check_rejections"]


class Engine(Protocol):
    """The calls a simulated product makes; ``now`` is the simulated time of the call."""

    def event_count(self) -> int: ...

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> None: ...

    def track_many(self, events: Sequence[dict[str, Any]]) -> int: ...

    def recommend_many(
        self, user_ids: Sequence[str], k: int, now: Sequence[float]
    ) -> list[dict[str, Any]]: ...

    def train(self, now: float) -> dict[str, Any]: ...

    def run_loop_once(self, now: float) -> dict[str, Any]: ...

    def close(self) -> None: ...


def check_rejections(rejected: Sequence[dict[str, Any]]) -> None:
    """Simulated events are valid by construction: a rejection means a misconfigured engine."""
    if rejected:
        first = rejected[0]
        raise FlywheelError(
            f"the engine rejected {len(rejected)} simulated event(s), first: "
            f"{first.get('field')}: {first.get('error')}"
        )


class EmbeddedEngine:
    """The engine in this process, on the store at ``url``, with settings overrides."""

    def __init__(self, url: str, **settings: Any) -> None:
        unknown = sorted(set(settings) - set(dfw.Settings.model_fields))
        if unknown:
            raise ConfigError(f"this engine has no setting {unknown[0]!r}", field=unknown[0])
        self.wheel = dfw.open(url, **settings)

    def event_count(self) -> int:
        return int(self.wheel.stats()["events"])

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> None:
        self.wheel.upsert_items(items)

    def track_many(self, events: Sequence[dict[str, Any]]) -> int:
        result = self.wheel.track_many(events)
        check_rejections(result.rejected)
        return result.accepted

    def recommend_many(
        self, user_ids: Sequence[str], k: int, now: Sequence[float]
    ) -> list[dict[str, Any]]:
        return self.wheel.recommend_many(user_ids, k=k, now=now)

    def train(self, now: float) -> dict[str, Any]:
        return self.wheel.train(now=now)

    def run_loop_once(self, now: float) -> dict[str, Any]:
        return self.wheel.run_loop_once(now=now)

    def close(self) -> None:
        self.wheel.close()
