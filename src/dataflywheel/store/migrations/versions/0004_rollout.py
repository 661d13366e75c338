"""rollout: experiments, interleaving teams, shadow results, triggers, label queue, suites

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("arms", sa.JSON(), nullable=False),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("guardrails", sa.JSON(), nullable=False),
        sa.Column("min_sample_size", sa.Integer(), nullable=False),
        sa.Column("salt", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("stopped_at", sa.Float(), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
    )
    op.create_index("ix_experiments_status", "experiments", ["status"])
    op.create_table(
        "interleaving_teams",
        sa.Column("recommendation_id", sa.String(64), primary_key=True),
        sa.Column("experiment_id", sa.String(32), nullable=False),
        sa.Column("teams", sa.JSON(), nullable=False),
    )
    op.create_index("ix_interleaving_teams_experiment", "interleaving_teams", ["experiment_id"])
    op.create_table(
        "shadow_results",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("recommendation_id", sa.String(64), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("ts", sa.Float(), nullable=False),
        sa.Column("item_ids", sa.JSON(), nullable=False),
        sa.Column("overlap", sa.Float(), nullable=False),
        sa.Column("rank_corr", sa.Float(), nullable=True),
    )
    op.create_index("ix_shadow_results_version", "shadow_results", ["version", "ts"])
    op.create_table(
        "triggers",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("rule", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("quota_per_day", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
    )
    op.create_table(
        "label_queue",
        sa.Column("id", BigId, primary_key=True, autoincrement=True),
        sa.Column("dedup_key", sa.String(600), nullable=False, unique=True),
        sa.Column("task", sa.String(64), nullable=False),
        sa.Column("trigger_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=True),
        sa.Column("recommendation_id", sa.String(256), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("labelled_at", sa.Float(), nullable=True),
        sa.Column("label", sa.JSON(), nullable=True),
    )
    op.create_index("ix_label_queue_pending", "label_queue", ["status", "priority"])
    op.create_table(
        "regression_cases",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("suite", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("item_id", sa.String(256), nullable=False),
        sa.Column("relevant", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("suite", "user_id", "item_id", name="ux_regression_case"),
    )
    state = op.create_table(
        "label_state",
        sa.Column("source", sa.String(16), primary_key=True),
        sa.Column("watermark", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(state, [{"source": "events", "watermark": 0}])


def downgrade() -> None:
    op.drop_table("label_state")
    op.drop_table("regression_cases")
    op.drop_index("ix_label_queue_pending", table_name="label_queue")
    op.drop_table("label_queue")
    op.drop_table("triggers")
    op.drop_index("ix_shadow_results_version", table_name="shadow_results")
    op.drop_table("shadow_results")
    op.drop_index("ix_interleaving_teams_experiment", table_name="interleaving_teams")
    op.drop_table("interleaving_teams")
    op.drop_index("ix_experiments_status", table_name="experiments")
    op.drop_table("experiments")
