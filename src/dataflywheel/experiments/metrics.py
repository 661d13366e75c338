"""Per-user metrics of an experiment's arms, read from impressions and events.

The unit is the user (the unit of assignment). Feedback is attributed to an arm through the
``recommendation_id`` of the list it answered; user-level outcomes (strong signals, conversions,
return visits) count every event of the user after exposure. The same metrics over a pre-period
of the same users are the CUPED covariates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select

from dataflywheel.config import Settings
from dataflywheel.experiments.tables import interleaving_teams
from dataflywheel.store import schema
from dataflywheel.store.store import Store

CHUNK = 900
DAY = 86_400.0
USER_METRICS = ("clicks", "engagement", "watch_time", "strong_events", "conversions", "return_rate")


@dataclass
class ArmData:
    """Aligned per-user arrays of one arm (``pre`` holds the pre-period covariates)."""

    users: list[str]
    impressions: NDArray[np.float64]
    values: dict[str, NDArray[np.float64]]
    pre: dict[str, NDArray[np.float64]] = field(default_factory=dict)


@dataclass
class _Tally:
    impressions: float = 0.0
    clicks: float = 0.0
    engagement: float = 0.0
    watch_time: float = 0.0
    strong_events: float = 0.0
    conversions: float = 0.0
    days: set[int] = field(default_factory=set)


def arm_data(
    store: Store, experiment: dict[str, Any], pre_seconds: float, now: float
) -> dict[str, ArmData]:
    """Per-arm, per-user metrics since the experiment started (and over the pre-period)."""
    i = schema.impressions.c
    with store.read() as conn:
        rows = conn.execute(
            select(i.user_id, i.arm, i.recommendation_id, i.ts).where(
                i.experiment_id == experiment["id"]
            )
        ).all()
    start = float(experiment["created_at"])
    end = float(experiment["stopped_at"] or now)
    arm_of: dict[str, str] = {}
    first_seen: dict[str, float] = {}
    post: dict[str, _Tally] = defaultdict(_Tally)
    rec_user: dict[str, str] = {}
    for user, arm, rec, ts in rows:
        arm_of.setdefault(user, arm)
        first_seen[user] = min(ts, first_seen.get(user, ts))
        post[user].impressions += 1
        rec_user[rec] = user
    settings = store.settings
    for user, kind, value, _ts, rec in _user_events(store, list(arm_of), start, end):
        tally = post[user]
        signal = settings.signal(kind)
        if signal is not None and signal.strong:
            tally.strong_events += 1
        if kind == "purchase":
            tally.conversions += 1
        if _ts >= first_seen[user]:
            tally.days.add(int(_ts // DAY))
        if rec is not None and rec_user.get(rec) == user:
            _attribute(tally, kind, value, settings)
    pre: dict[str, _Tally] = defaultdict(_Tally)
    if pre_seconds > 0:
        for user, kind, value, ts, _rec in _user_events(
            store, list(arm_of), start - pre_seconds, start
        ):
            tally = pre[user]
            signal = settings.signal(kind)
            tally.strong_events += bool(signal is not None and signal.strong)
            tally.conversions += kind == "purchase"
            tally.days.add(int(ts // DAY))
            _attribute(tally, kind, value, settings)
    out: dict[str, ArmData] = {}
    for arm in [a["name"] for a in experiment["arms"]]:
        users = sorted(u for u, a in arm_of.items() if a == arm)
        out[arm] = ArmData(
            users=users,
            impressions=np.array([post[u].impressions for u in users], dtype=np.float64),
            values=_columns([post[u] for u in users], returned=True),
            pre=_columns([pre[u] for u in users], returned=False) if pre_seconds > 0 else {},
        )
    return out


def _attribute(tally: _Tally, kind: str, value: float, settings: Settings) -> None:
    """Add one feedback event to the tally of the list (or period) it belongs to."""
    signal = settings.signal(kind)
    if kind == "click":
        tally.clicks += 1
    if kind == "watch":
        tally.watch_time += value
    if signal is not None:
        weight = signal.weight * (value - signal.offset) if signal.uses_value else signal.weight
        tally.engagement += max(weight, 0.0)


def _columns(tallies: Sequence[_Tally], *, returned: bool) -> dict[str, NDArray[np.float64]]:
    """Metric arrays; ``return_rate`` is 1 for a user active on a later day than the first
    exposure (post) or the number of active days (pre-period covariate)."""
    columns = {
        name: np.array([getattr(t, name) for t in tallies], dtype=np.float64)
        for name in USER_METRICS
        if name != "return_rate"
    }
    days = np.array([len(t.days) for t in tallies], dtype=np.float64)
    columns["return_rate"] = (days > 1).astype(np.float64) if returned else days
    return columns


def _user_events(
    store: Store, user_ids: Sequence[str], start: float, end: float
) -> Iterable[tuple[str, str, float, float, str | None]]:
    """(user_id, type, value, ts, recommendation_id) of the users' events in [start, end]."""
    e, u = schema.events.c, schema.users.c
    for offset in range(0, len(user_ids), CHUNK):
        chunk = user_ids[offset : offset + CHUNK]
        query = (
            select(u.user_id, e.type, e.value, e.ts, e.recommendation_id)
            .select_from(schema.events.join(schema.users, e.user_idx == u.idx))
            .where(u.user_id.in_(chunk), e.ts >= start, e.ts <= end)
        )
        with store.read() as conn:
            yield from conn.execute(query).all()


def interleaving_credit(
    store: Store, experiment: dict[str, Any]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Per-user credit of team A and team B: positive feedback on the items each drafted."""
    i, t, e = schema.impressions.c, interleaving_teams.c, schema.events.c
    with store.read() as conn:
        lists = conn.execute(
            select(i.recommendation_id, i.user_id, i.item_ids, t.teams)
            .select_from(
                schema.impressions.join(
                    interleaving_teams, i.recommendation_id == t.recommendation_id
                )
            )
            .where(t.experiment_id == experiment["id"])
        ).all()
        feedback = conn.execute(
            select(e.recommendation_id, schema.items.c.item_id, e.type)
            .select_from(
                schema.events.join(
                    schema.impressions, e.recommendation_id == i.recommendation_id
                ).join(schema.items, e.item_idx == schema.items.c.idx)
            )
            .where(i.experiment_id == experiment["id"])
        ).all()
    positive = {
        (rec, item)
        for rec, item, kind in feedback
        if (s := store.settings.signal(kind)) is not None and s.weight > 0
    }
    credit: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for rec, user, items, teams in lists:
        totals = credit[user]
        for item, team in zip(items, teams, strict=False):
            if (rec, item) in positive:
                totals[0 if team == "A" else 1] += 1.0
    users = sorted(credit)
    a = np.array([credit[u][0] for u in users], dtype=np.float64)
    b = np.array([credit[u][1] for u in users], dtype=np.float64)
    return a, b
