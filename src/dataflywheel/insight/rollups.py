"""Incremental daily rollups: recompute only the days that new events or impressions touch.

``refresh`` compares the highest ``events.id`` / ``impressions.id`` with the watermarks in
``insight_state``, finds the (event-time) days of the rows beyond them and rebuilds those days:
per user-day activity and sessions, per-day counts by type, the 7/30-day active windows around
them, first-seen cohorts, and what was served (per model version, per item). Recomputing a day is
idempotent, so an interrupted refresh is simply redone; the watermarks move only at the end.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    select,
    update,
)

from dataflywheel.config import Settings
from dataflywheel.insight import tables as T
from dataflywheel.insight.days import DAY
from dataflywheel.insight.supply import rebuild_day_clicks, record_first_impressions
from dataflywheel.store import schema
from dataflywheel.store.dialect import day_of
from dataflywheel.store.driver import fetch_rows, insert_rows
from dataflywheel.store.store import Store, dialect_insert

E = schema.events.c
I = schema.impressions.c  # noqa: E741 - the impressions table's columns

WAU_DAYS = 7
MAU_DAYS = 30
# A user who was active on day D and on none of the next MAU_DAYS days churned on D + MAU_DAYS.
CHURN_DAYS = MAU_DAYS
# Events received more than a day after they happened are late (a data-quality signal).
LATE_SECONDS = DAY
# A user-day is bot-like with absurd volume, or a sustained burst faster than a person clicks.
BOT_MAX_EVENTS_PER_DAY = 5_000
BOT_BURST_MIN_EVENTS = 100
BOT_MAX_EVENTS_PER_SECOND = 2.0
# Ids this far below the watermark are looked at again: on PostgreSQL a transaction can commit
# ids lower than ones already seen, and its events must not be skipped.
REVISIT_IDS = 100_000

CHUNK_ROWS = 500_000

_lock = threading.Lock()


@dataclass
class RefreshResult:
    """What a refresh did: the days it rebuilt and how long it took."""

    event_days: list[int] = field(default_factory=list)
    impression_days: list[int] = field(default_factory=list)
    seconds: float = 0.0


def non_engaging_types(settings: Settings) -> set[str]:
    """Event types that do not count as engaging with a served list (weight ≤ 0: impressions,
    skips, dislikes); every other type, unknown ones included, does."""
    return {name for name, signal in settings.signals.items() if signal.weight <= 0}


def strong_types(settings: Settings) -> set[str]:
    return {name for name, signal in settings.signals.items() if signal.strong}


def refresh(store: Store) -> RefreshResult:
    """Bring every rollup up to date with the events and impressions stored so far."""
    started = time.perf_counter()
    with _lock:
        result = _refresh(store)
    result.seconds = time.perf_counter() - started
    return result


def _refresh(store: Store) -> RefreshResult:
    result = RefreshResult()
    with store.read() as conn:
        marks = dict(conn.execute(select(T.state.c.name, T.state.c.watermark)).all())
        events_wm, impressions_wm = int(marks.get("events", 0)), int(marks.get("impressions", 0))
        events_max = int(conn.execute(select(func.coalesce(func.max(E.id), 0))).scalar_one())
        impressions_max = int(conn.execute(select(func.coalesce(func.max(I.id), 0))).scalar_one())
        if events_max == events_wm and impressions_max == impressions_wm:
            return result
        event_days = _touched_event_days(conn, events_wm, events_max)
        impression_days = _touched_impression_days(conn, impressions_wm, impressions_max)
        impression_days |= _feedback_days(conn, events_wm, events_max)
    _in_chunks(store, sorted(event_days), _rebuild_activity)
    _in_chunks(store, sorted(impression_days), _rebuild_served)
    with store.write() as conn:
        _lock_state(conn)
        if event_days:
            changed = event_days | _fill_gaps(conn)
            _rebuild_users_and_cohorts(conn, min(event_days), sorted(event_days))
            _rebuild_windows(conn, min(changed) - 1, max(changed) + MAU_DAYS)
        for name, value in (("events", events_max), ("impressions", impressions_max)):
            conn.execute(update(T.state).where(T.state.c.name == name).values(watermark=value))
    result.event_days = sorted(event_days)
    result.impression_days = sorted(impression_days)
    return result


def _in_chunks(
    store: Store, days: list[int], rebuild: Callable[[Connection, int, Settings], int]
) -> None:
    """Rebuild ``days`` in write transactions of about CHUNK_ROWS rows each: few commits for
    small stores, short write locks for big ones."""
    while days:
        with store.write() as conn:
            _lock_state(conn)
            rows = 0
            while days and rows < CHUNK_ROWS:
                rows += rebuild(conn, days.pop(0), store.settings)


def _insert(conn: Connection, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Bulk insert of plain tuples (all columns, in order) at the driver level."""
    insert_rows(conn, table.name, [c.name for c in table.columns], rows)


def _lock_state(conn: Connection) -> None:
    """Serialise refreshers (PostgreSQL row lock; SQLite's write transaction already does)."""
    conn.execute(select(T.state.c.name).where(T.state.c.name == "events").with_for_update())


def _day_range(conn: Connection, ts: Any, where: Any) -> set[int]:
    low, high = conn.execute(select(func.min(ts), func.max(ts)).where(where)).one()
    if low is None:
        return set()
    return set(range(int(low // DAY), int(high // DAY) + 1))


def _touched_event_days(conn: Connection, watermark: int, newest: int) -> set[int]:
    if newest <= watermark:
        return set()
    if watermark == 0:  # first build: every day from the first event to the last
        return _day_range(conn, E.ts, E.id > 0)
    since = max(watermark - REVISIT_IDS, 0)
    rows = conn.execute(select(day_of(E.ts)).where(E.id > since).distinct())
    return {int(day) for (day,) in rows}


def _touched_impression_days(conn: Connection, watermark: int, newest: int) -> set[int]:
    if newest <= watermark:
        return set()
    if watermark == 0:
        return _day_range(conn, I.ts, I.id > 0)
    since = max(watermark - REVISIT_IDS, 0)
    rows = conn.execute(select(day_of(I.ts)).where(I.id > since).distinct())
    return {int(day) for (day,) in rows}


def _feedback_days(conn: Connection, watermark: int, newest: int) -> set[int]:
    """Days of the impressions that newly stored events refer to (late clicks change CTR)."""
    if newest <= watermark or watermark == 0:
        return set()
    since = max(watermark - REVISIT_IDS, 0)
    query = (
        select(day_of(I.ts))
        .select_from(
            schema.events.join(schema.impressions, I.recommendation_id == E.recommendation_id)
        )
        .where(E.id > since, E.recommendation_id.is_not(None))
        .distinct()
    )
    return {int(day) for (day,) in conn.execute(query)}


# Activity ------------------------------------------------------------------------------------


def _rebuild_activity(conn: Connection, day: int, settings: Settings) -> int:
    """User-days, sessions and counts by type for one day, from the raw events."""
    in_day = and_(E.ts >= day * DAY, E.ts < (day + 1) * DAY)
    late = case((E.received_at - E.ts > LATE_SECONDS, 1), else_=0)
    by_type = conn.execute(
        select(E.type, func.count(), func.sum(late)).where(in_day).group_by(E.type)
    ).all()
    conn.execute(delete(T.user_days).where(T.user_days.c.day == day))
    conn.execute(delete(T.day_types).where(T.day_types.c.day == day))
    values: dict[str, Any] = {
        "dau": 0,
        "events": sum(int(n) for _, n, _ in by_type),
        "sessions": 0,
        "session_seconds": 0.0,
        "late_events": sum(int(k) for _, _, k in by_type),
        "bot_users": 0,
    }
    if by_type:
        conn.execute(
            T.day_types.insert(), [{"day": day, "type": t, "events": n} for t, n, _ in by_type]
        )
        pairs = np.array(fetch_rows(conn, select(E.user_idx, E.ts).where(in_day)), dtype=np.float64)
        users, events, sessions, seconds, bot = user_day_activity(
            pairs[:, 0].astype(np.int64), pairs[:, 1], settings.session_gap_seconds
        )
        columns = (events.tolist(), sessions.tolist(), seconds.tolist(), bot.tolist())
        _insert(
            conn,
            T.user_days,
            [(day, u, n, k, t, b) for u, n, k, t, b in zip(users.tolist(), *columns, strict=True)],
        )
        values.update(
            dau=len(users),
            sessions=int(sessions.sum()),
            session_seconds=float(seconds.sum()),
            bot_users=int(bot.sum()),
        )
    _upsert_day(conn, day, values)
    rebuild_day_clicks(conn, day, strong_types(settings))
    return int(values["events"])


def user_day_activity(
    users: np.ndarray, ts: np.ndarray, gap: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per user of one day: (user, events, sessions, session seconds, bot-like).

    A session ends after ``gap`` seconds without an event; sessions are cut at midnight UTC, as
    in Universal Analytics, so each day's figures depend on that day's events only. A session's
    length is from its first to its last event (a single event lasts 0 s).
    """
    order = np.lexsort((ts, users))
    u, t = users[order], ts[order]
    n = len(u)
    first_of_user = np.ones(n, dtype=bool)
    first_of_user[1:] = u[1:] != u[:-1]
    new_session = first_of_user.copy()
    new_session[1:] |= np.diff(t) > gap
    session_starts = np.flatnonzero(new_session)
    session_ends = np.append(session_starts[1:], n) - 1
    durations = t[session_ends] - t[session_starts]
    user_starts = np.flatnonzero(first_of_user)
    user_ends = np.append(user_starts[1:], n) - 1
    events = np.diff(np.append(user_starts, n))
    sessions = np.add.reduceat(new_session.astype(np.int64), user_starts)
    owner = np.searchsorted(user_starts, session_starts, side="right") - 1
    seconds = np.bincount(owner, weights=durations, minlength=len(user_starts))
    span = np.maximum(t[user_ends] - t[user_starts], 1.0)
    bot = (events >= BOT_MAX_EVENTS_PER_DAY) | (
        (events >= BOT_BURST_MIN_EVENTS) & (events / span > BOT_MAX_EVENTS_PER_SECOND)
    )
    return u[user_starts], events, sessions, seconds, bot


def _upsert_day(conn: Connection, day: int, values: dict[str, Any]) -> None:
    zeros = {"wau": 0, "mau": 0, "new_users": 0, "churned_users": 0, "retained_next": 0}
    insert = dialect_insert(conn, T.days).values(day=day, **zeros, **values)
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["day"], set_={k: insert.excluded[k] for k in values}
        )
    )


def _fill_gaps(conn: Connection) -> set[int]:
    """Add zero rows for days without events between the first and last day; return them."""
    known = {int(d) for (d,) in conn.execute(select(T.days.c.day))}
    if not known:
        return set()
    missing = set(range(min(known), max(known) + 1)) - known
    for day in sorted(missing):
        _upsert_day(
            conn,
            day,
            {
                "dau": 0,
                "events": 0,
                "sessions": 0,
                "session_seconds": 0.0,
                "late_events": 0,
                "bot_users": 0,
            },
        )
    return missing


def _rebuild_users_and_cohorts(conn: Connection, since: int, touched: Sequence[int]) -> None:
    """First/last active day per user, then cohort sizes for every day from ``since`` on.

    A late event can move a user's first day earlier, but only to a touched day, so all of that
    user's activity lies on days ≥ ``since`` and is recounted here.
    """
    ud = T.user_days.c
    spans = (
        select(ud.user_idx, func.min(ud.day), func.max(ud.day))
        .where(ud.day.in_(list(touched)))
        .group_by(ud.user_idx)
    )
    insert = dialect_insert(conn, T.user_spans).from_select(
        ["user_idx", "first_day", "last_day"], spans
    )
    us = T.user_spans.c
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["user_idx"],
            set_={
                "first_day": case(
                    (insert.excluded.first_day < us.first_day, insert.excluded.first_day),
                    else_=us.first_day,
                ),
                "last_day": case(
                    (insert.excluded.last_day > us.last_day, insert.excluded.last_day),
                    else_=us.last_day,
                ),
            },
        )
    )
    conn.execute(delete(T.cohorts).where(T.cohorts.c.day >= since))
    counts = (
        select(ud.day, us.first_day, func.count())
        .select_from(T.user_days.join(T.user_spans, us.user_idx == ud.user_idx))
        .where(ud.day >= since)
        .group_by(ud.day, us.first_day)
    )
    conn.execute(T.cohorts.insert().from_select(["day", "cohort_day", "users"], counts))


def _rebuild_windows(conn: Connection, low: int, high: int) -> None:
    """WAU, MAU, churned, next-day retained and new users for the days in [low, high]."""
    first, last = conn.execute(select(func.min(T.days.c.day), func.max(T.days.c.day))).one()
    low, high = max(low, int(first)), min(high, int(last))
    if low > high:
        return
    ud = T.user_days.c
    pairs = fetch_rows(
        conn, select(ud.user_idx, ud.day).where(ud.day >= low - MAU_DAYS, ud.day <= high + 1)
    )
    activity = np.array(pairs, dtype=np.int64).reshape(-1, 2)
    windows = active_windows(activity[:, 0], activity[:, 1], low, high, last_known=int(last))
    us = T.user_spans.c
    new: dict[int, int] = {
        int(day): int(n)
        for day, n in conn.execute(
            select(us.first_day, func.count())
            .where(us.first_day >= low, us.first_day <= high)
            .group_by(us.first_day)
        )
    }
    statement = (
        update(T.days)
        .where(T.days.c.day == bindparam("d"))
        .values(
            wau=bindparam("wau"),
            mau=bindparam("mau"),
            churned_users=bindparam("churned"),
            retained_next=bindparam("retained"),
            new_users=bindparam("new"),
        )
    )
    conn.execute(
        statement,
        [
            {
                "d": day,
                "wau": int(windows["wau"][i]),
                "mau": int(windows["mau"][i]),
                "churned": int(windows["churned"][i]),
                "retained": int(windows["retained_next"][i]),
                "new": int(new.get(day, 0)),
            }
            for i, day in enumerate(range(low, high + 1))
        ],
    )


def active_windows(
    users: np.ndarray, days: np.ndarray, low: int, high: int, *, last_known: int
) -> dict[str, np.ndarray]:
    """Distinct-user windows for each day in [low, high] from (user, day) activity pairs.

    The pairs must cover days ``low − MAU_DAYS`` to ``high + 1``. A user active on day d counts
    in a W-day window ending on D when d ≤ D < d + W; per user the intervals are merged (an
    activity only extends coverage past the previous one's end), so each user counts once, and
    the counts are a cumulative sum of +1/−1 marks. ``retained_next`` counts users also active
    the next day (only when that day is known).
    """
    size = high - low + 1
    order = np.lexsort((days, users))
    u, d = users[order], days[order]
    same_next = np.zeros(len(u), dtype=bool)
    same_next[:-1] = u[1:] == u[:-1]
    next_day = np.where(same_next, np.append(d[1:], 0), np.iinfo(np.int64).max)
    prev_day = np.full(len(u), np.iinfo(np.int64).min // 2)
    prev_day[1:][same_next[:-1]] = d[:-1][same_next[:-1]]
    out: dict[str, np.ndarray] = {}
    for name, width in (("wau", WAU_DAYS), ("mau", MAU_DAYS)):
        start = np.maximum(d, prev_day + width)
        marks = np.zeros(size + 1, dtype=np.int64)
        np.add.at(marks, np.clip(start - low, 0, size), 1)
        np.add.at(marks, np.clip(d + width - low, 0, size), -1)
        out[name] = np.cumsum(marks)[:size]
    churn_day = d + CHURN_DAYS
    churns = (next_day > churn_day) & (churn_day >= low) & (churn_day <= min(high, last_known))
    out["churned"] = np.bincount(churn_day[churns] - low, minlength=size)[:size]
    kept = (next_day == d + 1) & (d >= low) & (d <= high)
    out["retained_next"] = np.bincount(d[kept] - low, minlength=size)[:size]
    return out


# Serving ---------------------------------------------------------------------------------------


def _rebuild_served(conn: Connection, day: int, settings: Settings) -> int:
    """Impressions and engaged impressions per (version, experiment, arm), items served."""
    in_day = and_(I.ts >= day * DAY, I.ts < (day + 1) * DAY)
    served = fetch_rows(
        conn,
        select(
            I.recommendation_id, I.model_version, I.experiment_id, I.arm, I.item_ids, I.ts
        ).where(in_day),
    )
    feedback = fetch_rows(
        conn,
        select(E.recommendation_id, E.type)
        .select_from(
            schema.impressions.join(schema.events, E.recommendation_id == I.recommendation_id)
        )
        .where(in_day),
    )
    for table in (T.served, T.served_items, T.served_days):
        conn.execute(delete(table).where(table.c.day == day))
    if not served:
        return 0
    passive = non_engaging_types(settings)
    strong = strong_types(settings)
    engaged = {rid for rid, kind in feedback if kind not in passive}
    strong_engaged = {rid for rid, kind in feedback if kind in strong}
    groups: dict[tuple[str, str, str], list[int]] = {}
    slots: Counter[str] = Counter()
    first_shown: dict[str, float] = {}
    for rid, version, experiment, arm, item_ids, ts in served:
        counts = groups.setdefault((version or "", experiment or "", arm or ""), [0, 0, 0])
        counts[0] += 1
        counts[1] += rid in engaged
        counts[2] += rid in strong_engaged
        if isinstance(item_ids, str | bytes):  # SQLite hands JSON back as text
            item_ids = orjson.loads(item_ids)
        shown = [str(item) for item in item_ids or ()]
        slots.update(shown)
        for item in shown:
            if ts < first_shown.get(item, np.inf):
                first_shown[item] = ts
    _insert(conn, T.served, [(day, *key, *counts) for key, counts in groups.items()])
    _insert(conn, T.served_items, [(day, item, n) for item, n in slots.items()])
    record_first_impressions(conn, first_shown)
    conn.execute(
        T.served_days.insert().values(
            day=day, items=len(slots), slots=sum(slots.values()), gini=gini(slots.values())
        )
    )
    return len(served) + len(feedback)


def gini(counts: Iterable[int]) -> float:
    """Gini coefficient of how often each served item was shown (0 = even, → 1 = one item)."""
    x = np.sort(np.fromiter(counts, dtype=np.float64))
    total = x.sum()
    if len(x) < 2 or total <= 0:
        return 0.0
    ranks = np.arange(1, len(x) + 1)
    return float(2.0 * (ranks * x).sum() / (len(x) * total) - (len(x) + 1) / len(x))
