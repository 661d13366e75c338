"""decisions across replicas: event deadlines, a reward inbox, deployment revisions

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("decision_deployments") as batch:
        batch.add_column(sa.Column("revision", sa.BigInteger(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("learner_seq", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("decision_events") as batch:
        batch.add_column(sa.Column("deadline", sa.Float(), nullable=True))
    op.create_index(
        "ix_decision_events_deadline", "decision_events", ["deployment", "outcome", "deadline"]
    )
    op.create_index("ix_decision_events_learned", "decision_events", ["deployment", "learned_seq"])
    op.create_table(
        "decision_inbox",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("deployment", sa.String(length=64), nullable=False),
        sa.Column("event_id", sa.String(length=256), nullable=False),
        sa.Column("slot_id", sa.String(length=256), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("decision_inbox")
    op.drop_index("ix_decision_events_learned", table_name="decision_events")
    op.drop_index("ix_decision_events_deadline", table_name="decision_events")
    with op.batch_alter_table("decision_events") as batch:
        batch.drop_column("deadline")
    with op.batch_alter_table("decision_deployments") as batch:
        batch.drop_column("learner_seq")
        batch.drop_column("revision")
