"""insight rollups: daily KPI tables, their watermarks, and time indexes on the logs

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

NOT_NULL_RECOMMENDATION = sa.text("recommendation_id IS NOT NULL")


def upgrade() -> None:
    state = op.create_table(
        "insight_state",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.bulk_insert(
        state, [{"name": "events", "watermark": 0}, {"name": "impressions", "watermark": 0}]
    )
    op.create_table(
        "insight_days",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("dau", sa.Integer(), nullable=False),
        sa.Column("wau", sa.Integer(), nullable=False),
        sa.Column("mau", sa.Integer(), nullable=False),
        sa.Column("new_users", sa.Integer(), nullable=False),
        sa.Column("churned_users", sa.Integer(), nullable=False),
        sa.Column("retained_next", sa.Integer(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("sessions", sa.BigInteger(), nullable=False),
        sa.Column("session_seconds", sa.Float(), nullable=False),
        sa.Column("late_events", sa.BigInteger(), nullable=False),
        sa.Column("bot_users", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "insight_day_types",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "type"),
    )
    op.create_table(
        "insight_user_days",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("user_idx", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("sessions", sa.Integer(), nullable=False),
        sa.Column("session_seconds", sa.Float(), nullable=False),
        sa.Column("bot", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("day", "user_idx"),
    )
    op.create_table(
        "insight_users",
        sa.Column("user_idx", sa.Integer(), nullable=False),
        sa.Column("first_day", sa.Integer(), nullable=False),
        sa.Column("last_day", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_idx"),
    )
    op.create_index("ix_insight_users_first_day", "insight_users", ["first_day"])
    op.create_table(
        "insight_cohorts",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("cohort_day", sa.Integer(), nullable=False),
        sa.Column("users", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "cohort_day"),
    )
    op.create_table(
        "insight_served",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("experiment_id", sa.String(length=64), nullable=False),
        sa.Column("arm", sa.String(length=64), nullable=False),
        sa.Column("impressions", sa.BigInteger(), nullable=False),
        sa.Column("engaged", sa.BigInteger(), nullable=False),
        sa.Column("strong_engaged", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "model_version", "experiment_id", "arm"),
    )
    op.create_table(
        "insight_served_items",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.String(length=256), nullable=False),
        sa.Column("slots", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day", "item_id"),
    )
    op.create_index(
        "ix_insight_served_items_cover", "insight_served_items", ["day", "item_id", "slots"]
    )
    op.create_table(
        "insight_served_days",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("slots", sa.BigInteger(), nullable=False),
        sa.Column("gini", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_index(
        "ix_events_recommendation_id",
        "events",
        ["recommendation_id"],
        sqlite_where=NOT_NULL_RECOMMENDATION,
        postgresql_where=NOT_NULL_RECOMMENDATION,
    )
    op.create_index("ix_impressions_ts", "impressions", ["ts"])


def downgrade() -> None:
    op.drop_index("ix_impressions_ts", table_name="impressions")
    op.drop_index("ix_events_recommendation_id", table_name="events")
    op.drop_index("ix_events_ts", table_name="events")
    for name in (
        "insight_served_days",
        "insight_served_items",
        "insight_served",
        "insight_cohorts",
        "insight_users",
        "insight_user_days",
        "insight_day_types",
        "insight_days",
        "insight_state",
    ):
        op.drop_table(name)
