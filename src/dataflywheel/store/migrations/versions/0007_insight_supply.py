"""insight supply rollups: clicks on young items per day, each item's first impression and
first strong signal

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "insight_supply_days",
        sa.Column("day", sa.Integer(), nullable=False),
        sa.Column("clicks", sa.BigInteger(), nullable=False),
        sa.Column("young_clicks", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    op.create_table(
        "insight_item_firsts",
        sa.Column("item_id", sa.String(length=256), nullable=False),
        sa.Column("first_impression", sa.Float(), nullable=True),
        sa.Column("first_strong", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("item_id"),
    )
    # The new tables start empty: the next refresh rebuilds every day, filling them.
    op.execute("UPDATE insight_state SET watermark = 0")


def downgrade() -> None:
    op.drop_table("insight_item_firsts")
    op.drop_table("insight_supply_days")
