"""decisions: deployments of contextual-bandit learners and their decision log

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "decision_deployments",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("learner", sa.JSON(), nullable=False),
        sa.Column("service", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "decision_events",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=256), nullable=False),
        sa.Column("slot_id", sa.String(length=256), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("action_ids", sa.JSON(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("chosen_index", sa.Integer(), nullable=False),
        sa.Column("chosen_id", sa.String(length=256), nullable=False),
        sa.Column("deferred", sa.Boolean(), nullable=False),
        sa.Column("activated_at", sa.Float(), nullable=True),
        sa.Column("reward", sa.Float(), nullable=True),
        sa.Column("reward_at", sa.Float(), nullable=True),
        sa.Column("rewards", sa.Integer(), nullable=False),
        sa.Column("late_rewards", sa.Integer(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("learned_at", sa.Float(), nullable=True),
        sa.Column("learned_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ux_decision_events_event",
        "decision_events",
        ["deployment", "event_id", "slot_id"],
        unique=True,
    )
    op.create_index("ix_decision_events_outcome", "decision_events", ["deployment", "outcome"])
    op.create_index("ix_decision_events_ts", "decision_events", ["deployment", "ts"])


def downgrade() -> None:
    op.drop_index("ix_decision_events_ts", table_name="decision_events")
    op.drop_index("ix_decision_events_outcome", table_name="decision_events")
    op.drop_index("ux_decision_events_event", table_name="decision_events")
    op.drop_table("decision_events")
    op.drop_table("decision_deployments")
