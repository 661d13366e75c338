"""Insight's rollup tables, on the store's shared ``metadata`` so both dialects get them.

Rollups are keyed by ``day`` (whole UTC days since 1970-01-01, by event time) and are recomputed
for the days that new events or impressions touch; ``insight_state`` holds the id watermarks.
The two indexes on ``events`` and one on ``impressions`` let a day's rows be read by time and an
impression's feedback be found by ``recommendation_id`` without scanning the whole log.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, String, Table

from dataflywheel.store.dialect import partial_index
from dataflywheel.store.schema import events, impressions, metadata

state = Table(
    "insight_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("watermark", BigInteger, nullable=False),
)

days = Table(
    "insight_days",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("dau", Integer, nullable=False),
    Column("wau", Integer, nullable=False),
    Column("mau", Integer, nullable=False),
    Column("new_users", Integer, nullable=False),
    Column("churned_users", Integer, nullable=False),
    Column("retained_next", Integer, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("sessions", BigInteger, nullable=False),
    Column("session_seconds", Float, nullable=False),
    Column("late_events", BigInteger, nullable=False),
    Column("bot_users", Integer, nullable=False),
)

day_types = Table(
    "insight_day_types",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("type", String(64), primary_key=True),
    Column("events", BigInteger, nullable=False),
)

user_days = Table(
    "insight_user_days",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("user_idx", Integer, primary_key=True),
    Column("events", Integer, nullable=False),
    Column("sessions", Integer, nullable=False),
    Column("session_seconds", Float, nullable=False),
    Column("bot", Boolean, nullable=False),
)

user_spans = Table(
    "insight_users",
    metadata,
    Column("user_idx", Integer, primary_key=True),
    Column("first_day", Integer, nullable=False),
    Column("last_day", Integer, nullable=False),
    Index("ix_insight_users_first_day", "first_day"),
)

cohorts = Table(
    "insight_cohorts",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("cohort_day", Integer, primary_key=True),
    Column("users", Integer, nullable=False),
)

served = Table(
    "insight_served",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("model_version", String(64), primary_key=True),
    Column("experiment_id", String(64), primary_key=True),
    Column("arm", String(64), primary_key=True),
    Column("impressions", BigInteger, nullable=False),
    Column("engaged", BigInteger, nullable=False),
    Column("strong_engaged", BigInteger, nullable=False),
)

served_items = Table(
    "insight_served_items",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("item_id", String(256), primary_key=True),
    Column("slots", BigInteger, nullable=False),
    # Covers the per-item sums of the KPI summary, so they read no table rows.
    Index("ix_insight_served_items_cover", "day", "item_id", "slots"),
)

served_days = Table(
    "insight_served_days",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("items", Integer, nullable=False),
    Column("slots", BigInteger, nullable=False),
    Column("gini", Float, nullable=False),
)

# Indexes on tables owned by the store, needed to read one day of the log.
events_ts = Index("ix_events_ts", events.c.ts)
events_recommendation = partial_index(
    "ix_events_recommendation_id",
    events.c.recommendation_id,
    where="recommendation_id IS NOT NULL",
)
impressions_ts = Index("ix_impressions_ts", impressions.c.ts)

# Supply (docs/insight.md, "Supply"): clicks per day and how many went to items younger than
# YOUNG_ITEM_DAYS; per item, when it was first shown and first got a strong signal.
supply_days = Table(
    "insight_supply_days",
    metadata,
    Column("day", Integer, primary_key=True),
    Column("clicks", BigInteger, nullable=False),
    Column("young_clicks", BigInteger, nullable=False),
)

item_firsts = Table(
    "insight_item_firsts",
    metadata,
    Column("item_id", String(256), primary_key=True),
    Column("first_impression", Float, nullable=True),
    Column("first_strong", Float, nullable=True),
)
