"""A small simulated world for rollout tests: users in four taste clusters, items in four
categories, and a click model where users click items of their own cluster far more often."""

from __future__ import annotations

from typing import Any

import numpy as np

import dataflywheel as dfw

CLUSTERS = 4
DAY = 86_400.0


class World:
    def __init__(self, users: int = 120, items: int = 200, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.users = [f"u{n}" for n in range(users)]
        self.items = [f"i{n}" for n in range(items)]
        self.clock = 1.7e9
        self.events = 0

    def cluster(self, key: str) -> int:
        return int(key[1:]) % CLUSTERS

    def tick(self, seconds: float = 60.0) -> float:
        self.clock += seconds
        return self.clock

    def event(self, user: str, item: str, kind: str, rec: str | None = None) -> dict[str, Any]:
        self.events += 1
        event = {
            "event_id": f"e{self.events}",
            "user_id": user,
            "item_id": item,
            "type": kind,
            "timestamp": self.tick(1.0),
        }
        if rec is not None:
            event["recommendation_id"] = rec
        return event

    def history(self, per_user: int = 12) -> list[dict[str, Any]]:
        """Organic clicks: mostly in the user's cluster, a few anywhere."""
        events = []
        for user in self.users:
            own = [i for i in self.items if self.cluster(i) == self.cluster(user)]
            for _ in range(per_user):
                pool = own if self.rng.random() < 0.9 else self.items
                item = pool[int(self.rng.integers(len(pool)))]
                events.append(self.event(user, item, "click"))
        return events

    def respond(self, user: str, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """Clicks on liked items (position-discounted); a top-3 item from another cluster is
        disliked now and then."""
        events = []
        rec = answer["recommendation_id"]
        for position, entry in enumerate(answer["items"]):
            item = entry["item_id"]
            liked = self.cluster(item) == self.cluster(user)
            p = (0.5 if liked else 0.03) / (1.0 + 0.3 * position)
            if self.rng.random() < p:
                events.append(self.event(user, item, "click", rec))
            elif not liked and position < 3 and self.rng.random() < 0.1:
                events.append(self.event(user, item, "dislike", rec))
        return events

    def serve_round(self, wheel: dfw.Flywheel, users: list[str] | None = None, k: int = 5) -> int:
        """Every user asks once and answers; returns the number of requests."""
        events: list[dict[str, Any]] = []
        chosen = self.users if users is None else users
        for user in chosen:
            answer = wheel.recommend(user, k, now=self.tick(1.0))
            events.extend(self.respond(user, answer))
        if events:
            wheel.track_many(events)
        return len(chosen)
