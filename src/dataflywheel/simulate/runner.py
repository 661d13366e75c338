"""The day loop: users visit, ask the engine for lists, pick, consume, report, return or leave.

A day runs in rounds of requests: every open session makes its next request, the round's events
are sent in one batch, then the next round starts — so each user's next list already reflects
their latest feedback while ingestion stays batched. At the end of the day the scenario decides
whether the engine retrains. Nothing time-dependent (engine ids, wall-clock times) enters the
:class:`DayReport`, so the same seed gives the same reports.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dataflywheel.config import DEFAULT_SIGNALS
from dataflywheel.errors import TrainingError
from dataflywheel.simulate.behaviour import Engagement, consume
from dataflywheel.simulate.choice import ChoiceModel
from dataflywheel.simulate.creators import NEVER, Creators, n_creators
from dataflywheel.simulate.engine import Engine
from dataflywheel.simulate.population import Population
from dataflywheel.simulate.quality import served_ndcg
from dataflywheel.simulate.scenarios import Scenario

__all__ = ["DayReport", "Simulation", "Timings"]

DAY = 86_400.0
LIST_SIZE = 10
MAX_REQUESTS = 6
REQUEST_GAP = 90.0
SEARCH_PROBABILITY = 0.3
SECOND_SESSION = 0.3
STRONG_TYPES = frozenset(name for name, signal in DEFAULT_SIGNALS.items() if signal.strong)


@dataclass
class DayReport:
    """One simulated day as the contract's JSON shows it."""

    day: int
    dau: int
    sessions: int
    events: int
    strong_events: int
    model_version: str | None
    quality: float


@dataclass
class Timings:
    """Wall-clock seconds per phase, to show where a simulated day goes (never in the JSON)."""

    seconds: dict[str, float] = field(
        default_factory=lambda: dict.fromkeys(("simulate", "ingest", "recommend", "train"), 0.0)
    )
    calls: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def measure(self, phase: str, calls: int = 1) -> Iterator[None]:
        """Time a block that makes ``calls`` engine calls (a batch of requests counts each)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - start
            self.calls[phase] += calls


@dataclass(eq=False)
class User:
    """A simulated user's hidden state."""

    user_id: str
    taste: NDArray[np.float64]
    satisfaction: float
    consumed: set[int] = field(default_factory=set)
    active: bool = True


@dataclass
class Session:
    """One visit in progress: the user, its row in today's utility matrix and its outcomes."""

    user: User
    row: int
    start: float
    outcomes: list[float] = field(default_factory=list)
    open: bool = True


class Simulation:
    """Runs a scenario against an engine, day by day, from a seeded population."""

    def __init__(
        self,
        engine: Engine,
        population: Population,
        scenario: Scenario,
        n_users: int,
        days: int,
        seed: int,
        clock: float | None = None,
    ) -> None:
        self.engine, self.population, self.scenario = engine, population, scenario
        self.days = days
        self.rng = np.random.default_rng([seed, 1])
        self.choice = ChoiceModel()
        self.engagement = Engagement(elastic=scenario.elastic)
        today = (clock if clock is not None else time.time()) // DAY * DAY
        self.start = today - days * DAY
        self.run_id = uuid.uuid4().hex[:12]
        self.event_counter = 0
        self.index = {item_id: i for i, item_id in enumerate(population.item_ids)}
        self.users: list[User] = []
        self.referred = 0
        self.timings = Timings()
        self.reports: list[DayReport] = []
        self.loop_actions: Counter[str] = Counter()
        self.initial_users = n_users
        self._add_users(n_users)
        self.creators: Creators | None = None
        if scenario.ugc:
            # Its own stream, so uploads do not shift the draws of the users' behaviour.
            initial = int(np.count_nonzero(population.release_day < NEVER))
            self.creators = Creators(
                population, initial, np.random.default_rng([seed, 2]), scenario.content
            )
            self.creators.enlist([(u.user_id, u.taste) for u in self.users[: n_creators(n_users)]])

    # Population ------------------------------------------------------------------------------

    def _add_users(self, n: int) -> list[User]:
        tastes = self.population.draw_users(n, self.rng)
        new = [
            User(f"u{len(self.users) + i}", taste, self.engagement.baseline)
            for i, taste in enumerate(tastes)
        ]
        self.users.extend(new)
        return new

    def _release_items(self, day: int) -> None:
        if self.creators is not None:
            self._upload(day)
            return
        pop = self.population
        due = np.flatnonzero(
            (pop.release_day <= day) if day == 1 else (pop.release_day == day)
        ).tolist()
        if due:
            self.engine.upsert_items(
                [
                    {
                        "id": pop.item_ids[i],
                        "categories": [pop.categories[i]],
                        "created_at": self.start + (int(pop.release_day[i]) - 1) * DAY,
                    }
                    for i in due
                ]
            )

    def _upload(self, day: int) -> None:
        """The ``ugc`` catalogue: the initial items on day 1, then the creators' uploads."""
        assert self.creators is not None
        items = self.creators.initial_items(self.start) if day == 1 else []
        active = {u.user_id: u.satisfaction for u in self.users if u.active}
        items += self.creators.upload(day, self.start + (day - 1) * DAY, active)
        if items:
            self.engine.upsert_items(items)

    # One day ---------------------------------------------------------------------------------

    def run(self, on_day: Callable[[DayReport], None] | None = None) -> list[DayReport]:
        """Simulate every day; ``on_day`` hears about each finished day."""
        for day in range(1, self.days + 1):
            report = self.run_day(day)
            if on_day is not None:
                on_day(report)
        return self.reports

    def run_day(self, day: int) -> DayReport:
        timings = self.timings
        day_start = self.start + (day - 1) * DAY
        with timings.measure("ingest"):
            self._release_items(day)
        with timings.measure("simulate"):
            newcomers = {u.user_id for u in self._add_users(self.referred)}
            self.referred = 0
            visitors = [
                u
                for u in self.users
                if u.active
                and (
                    u.user_id in newcomers
                    or self.rng.random() < self.engagement.visit_probability(u.satisfaction)
                )
            ]
            tastes = np.array([u.taste for u in visitors]).reshape(len(visitors), -1)
            utility = self.population.utility(tastes, day)
            offsets = self.rng.uniform(0.0, DAY - 8 * 3600, size=len(visitors))
        tally = _DayTally()
        first = [Session(u, row, day_start + offsets[row]) for row, u in enumerate(visitors)]
        self._run_sessions(first, utility, tally)
        with timings.measure("simulate"):
            second = [
                Session(s.user, s.row, s.start + self.rng.uniform(2, 6) * 3600)
                for s in first
                if s.user.active
                and self.rng.random() < SECOND_SESSION * self.engagement.felt(_mean(s.outcomes))
            ]
        self._run_sessions(second, utility, tally)
        with timings.measure("simulate"):
            self._end_of_visits(first + second)
        self._retrain(day_start + DAY - 1.0)
        report = DayReport(
            day=day,
            dau=len(visitors),
            sessions=len(first) + len(second),
            events=tally.events,
            strong_events=tally.strong,
            model_version=tally.model_version(),
            quality=round(_mean(tally.quality), 4),
        )
        self.reports.append(report)
        return report

    def _run_sessions(
        self, sessions: list[Session], utility: NDArray[np.float64], tally: _DayTally
    ) -> None:
        """Rounds of requests until every session has ended; one event batch per round."""
        for step in range(MAX_REQUESTS):
            live = [s for s in sessions if s.open]
            if not live:
                return
            events: list[dict[str, Any]] = []
            times = [session.start + step * REQUEST_GAP for session in live]
            with self.timings.measure("recommend", calls=len(live)):
                answers = self.engine.recommend_many(
                    [session.user.user_id for session in live], LIST_SIZE, times
                )
            with self.timings.measure("simulate"):
                for session, answer, now in zip(live, answers, times, strict=True):
                    self._request(session, answer, utility[session.row], now, events, tally)
            with self.timings.measure("ingest"):
                if events:
                    self.engine.track_many(events)

    def _request(
        self,
        session: Session,
        answer: dict[str, Any],
        utility: NDArray[np.float64],
        now: float,
        events: list[dict[str, Any]],
        tally: _DayTally,
    ) -> None:
        """One served list: judge it, let the user pick or search, record the feedback."""
        user, pop = session.user, self.population
        served = np.array([self.index[it["item_id"]] for it in answer["items"]], dtype=np.int64)
        available = utility.copy()
        if user.consumed:
            available[list(user.consumed)] = -np.inf
        tally.quality.append(served_ndcg(available, served, LIST_SIZE))
        tally.versions[answer.get("model_version")] += 1
        rec_id = answer["recommendation_id"]
        pick: int | None = None
        if served.size:
            position = self.choice.choose(available[served] + pop.bait[served], self.rng)
            pick = None if position is None else int(served[position])
        outcome = 0.0
        if pick is not None:
            self._emit(events, tally, user, pick, "click", 1.0, now + 5, rec_id)
            outcome = self._consume(events, tally, user, pick, available[pick], now + 10, rec_id)
        elif np.isfinite(available).any() and self.rng.random() < SEARCH_PROBABILITY:
            top = np.argsort(-available, kind="stable")[:5]
            found = int(self.rng.choice(top[np.isfinite(available[top])]))
            self._emit(events, tally, user, found, "click", 1.0, now + 20, None)
            self._emit(events, tally, user, found, "correction", 1.0, now + 20, rec_id)
            outcome = 0.7 * self._consume(
                events, tally, user, found, available[found], now + 25, None
            )
        session.outcomes.append(outcome)
        if len(session.outcomes) >= MAX_REQUESTS or (
            self.rng.random() >= self.engagement.continue_probability(outcome)
        ):
            session.open = False

    def _consume(
        self,
        events: list[dict[str, Any]],
        tally: _DayTally,
        user: User,
        item: int,
        utility: float,
        now: float,
        rec_id: str | None,
    ) -> float:
        """The user opens ``item``: feedback signals; returns the watch fraction (the outcome)."""
        user.consumed.add(item)
        signals = consume(float(utility), self.rng)
        for offset, (event_type, value) in enumerate(signals):
            self._emit(events, tally, user, item, event_type, value, now + offset, rec_id)
        return signals[0][1]

    def _emit(
        self,
        events: list[dict[str, Any]],
        tally: _DayTally,
        user: User,
        item: int,
        event_type: str,
        value: float,
        timestamp: float,
        rec_id: str | None,
    ) -> None:
        """Queue an event if the scenario's product collects that type."""
        if not self.scenario.sends(event_type):
            return
        self.event_counter += 1
        event: dict[str, Any] = {
            "event_id": f"sim-{self.run_id}-{self.event_counter}",
            "user_id": user.user_id,
            "item_id": self.population.item_ids[item],
            "type": event_type,
            "value": value,
            "timestamp": timestamp,
        }
        if rec_id is not None:
            event["recommendation_id"] = rec_id
        events.append(event)
        if event_type == "click" and self.creators is not None:
            self.creators.clicked(item)
        tally.events += 1
        tally.strong += event_type in STRONG_TYPES

    def _end_of_visits(self, sessions: list[Session]) -> None:
        """Satisfaction moves with today's outcomes; some users leave, some bring a friend."""
        by_user: dict[str, list[float]] = {}
        users: dict[str, User] = {}
        for session in sessions:
            by_user.setdefault(session.user.user_id, []).extend(session.outcomes)
            users[session.user.user_id] = session.user
        for user_id, outcomes in by_user.items():
            user, score = users[user_id], _mean(outcomes)
            user.satisfaction = self.engagement.update(user.satisfaction, score)
            if self.rng.random() < self.engagement.referral_probability(score):
                self.referred += 1
            if self.rng.random() < self.engagement.churn_probability(user.satisfaction):
                user.active = False

    def _retrain(self, now: float) -> None:
        """The scenario's training step at the end of a day; too little data yet is no failure
        (a ``once`` scenario then trains on the first day it can)."""
        retrain = self.scenario.retrain
        if retrain == "never" or (retrain == "once" and self.loop_actions["trained"]):
            return
        with self.timings.measure("train"):
            try:
                if retrain == "daily":
                    self.loop_actions[str(self.engine.run_loop_once(now).get("action"))] += 1
                else:
                    self.engine.train(now)
                    self.loop_actions["trained"] += 1
            except TrainingError:
                self.loop_actions["not enough data"] += 1

    # Results ---------------------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """Totals and before/after figures of the days simulated so far."""
        reports = self.reports
        week = min(7, len(reports))
        return {
            "days": len(reports),
            "users_start": self.initial_users,
            "users_referred": len(self.users) - self.initial_users,
            "users_active_end": sum(u.active for u in self.users),
            "dau_first_day": reports[0].dau if reports else 0,
            "dau_last_day": reports[-1].dau if reports else 0,
            "dau_mean_last_week": round(_mean([r.dau for r in reports[-week:]]), 2),
            "events": sum(r.events for r in reports),
            "strong_events": sum(r.strong_events for r in reports),
            "quality_first_week": round(_mean([r.quality for r in reports[:week]]), 4),
            "quality_last_week": round(_mean([r.quality for r in reports[-week:]]), 4),
            "model_versions": len({r.model_version for r in reports if r.model_version}),
            "loop_actions": dict(sorted(self.loop_actions.items())),
            **(self.creators.summary() if self.creators is not None else {}),
        }

    def document(self, seed: int) -> dict[str, Any]:
        """The ``--json`` document: scenario, seed, one row per day, summary."""
        return {
            "scenario": self.scenario.name,
            "seed": seed,
            "days": [asdict(r) for r in self.reports],
            "summary": self.summary(),
        }


@dataclass
class _DayTally:
    events: int = 0
    strong: int = 0
    quality: list[float] = field(default_factory=list)
    versions: Counter[str | None] = field(default_factory=Counter)

    def model_version(self) -> str | None:
        """The version that served most of the day's lists."""
        named = [(count, v) for v, count in self.versions.items() if v is not None]
        return str(max(named, key=lambda pair: pair[0])[1]) if named else None


def _mean(values: list[float] | list[int]) -> float:
    return float(np.mean(values)) if values else 0.0
