"""Driving a running ``flywheel serve`` over HTTP, as a real product would.

The server keeps its own clock: impressions carry the time of the request, not the simulated
time, and promotion is left to the server's background loop (a daily retrain is a
``POST /v1/models/train``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from dataflywheel.errors import AuthError, FlywheelError
from dataflywheel.simulate.engine import check_rejections

__all__ = ["HttpEngine"]

MAX_BATCH = 10_000


class HttpEngine:
    """The engine behind ``base_url`` (e.g. ``http://127.0.0.1:8000``)."""

    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url, headers=headers, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise FlywheelError(f"cannot reach {self.client.base_url}: {exc}") from None
        if response.status_code in (401, 403):
            raise AuthError(f"{method} {path}: the server wants an API key (--api-key)")
        if response.status_code >= 400:
            raise FlywheelError(f"{method} {path}: HTTP {response.status_code}: {response.text}")
        return response.json()

    def event_count(self) -> int:
        return int(self._call("GET", "/v1/stats")["events"])

    def upsert_items(self, items: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(items), MAX_BATCH):
            self._call("POST", "/v1/items", json={"items": list(items[start : start + MAX_BATCH])})

    def track_many(self, events: Sequence[dict[str, Any]]) -> int:
        accepted = 0
        for start in range(0, len(events), MAX_BATCH):
            chunk = list(events[start : start + MAX_BATCH])
            answer = self._call("POST", "/v1/events", json={"events": chunk})
            check_rejections(answer["rejected"])
            accepted += int(answer["accepted"])
        return accepted

    def recommend_many(
        self, user_ids: Sequence[str], k: int, now: Sequence[float]
    ) -> list[dict[str, Any]]:
        """One request per user, as a product's clients would send them."""
        return [
            self._call("POST", "/v1/recommendations", json={"user_id": user_id, "k": k})
            for user_id in user_ids
        ]

    def train(self, now: float) -> dict[str, Any]:
        answer: dict[str, Any] = self._call("POST", "/v1/models/train", json={})
        return answer

    def run_loop_once(self, now: float) -> dict[str, Any]:
        return {"action": "trained", **self.train(now)}

    def close(self) -> None:
        self.client.close()
