"""Tables of the label loop: triggers, the label queue, regression suites, and the scan state.

A queue row is one case (task, user, item) a trigger found worth a human look; ``dedup_key``
makes the same case enter the queue once however many triggers or scans match it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from dataflywheel.store.schema import BigId, metadata

triggers = Table(
    "triggers",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("task", String(64), nullable=False),
    Column("source", String(16), nullable=False),
    Column("rule", JSON, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("quota_per_day", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
)

label_queue = Table(
    "label_queue",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("dedup_key", String(600), nullable=False, unique=True),
    Column("task", String(64), nullable=False),
    Column("trigger_id", String(32), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("item_id", String(256), nullable=True),
    Column("recommendation_id", String(256), nullable=True),
    Column("priority", Integer, nullable=False),
    Column("reason", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("labelled_at", Float, nullable=True),
    Column("label", JSON, nullable=True),
    Index("ix_label_queue_pending", "status", "priority"),
)

regression_cases = Table(
    "regression_cases",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("suite", String(64), nullable=False),
    Column("user_id", String(256), nullable=False),
    Column("item_id", String(256), nullable=False),
    Column("relevant", Boolean, nullable=False),
    Column("created_at", Float, nullable=False),
    UniqueConstraint("suite", "user_id", "item_id", name="ux_regression_case"),
)

label_state = Table(
    "label_state",
    metadata,
    Column("source", String(16), primary_key=True),
    Column("watermark", BigInteger, nullable=False),
)
