"""The store's tables (SQLAlchemy Core), one definition for SQLite and PostgreSQL.

Users and items get dense integer ids (``idx``) so a training snapshot is a direct column read.
Times are epoch seconds (float) so both dialects compare and bucket them the same way.
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
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

# SQLite only aliases the rowid for INTEGER PRIMARY KEY; PostgreSQL wants 64-bit ids.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def _entity_table(name: str, key: str) -> Table:
    return Table(
        name,
        metadata,
        Column("idx", Integer, primary_key=True, autoincrement=True),
        Column(key, String(256), nullable=False, unique=True),
        Column("attributes", JSON, nullable=True),
        Column("categories", JSON, nullable=True),
        Column("hidden", Boolean, nullable=False, default=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        # An erased subject's dense id must never name a new one (models keep what they
        # learned under it); SQLite otherwise reuses the highest id once it is deleted.
        sqlite_autoincrement=True,
    )


users = _entity_table("users", "user_id")
items = _entity_table("items", "item_id")

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", String(256), nullable=False),
    Column("user_idx", Integer, nullable=False),
    Column("item_idx", Integer, nullable=True),
    Column("type", String(64), nullable=False),
    Column("value", Float, nullable=False),
    Column("ts", Float, nullable=False),
    Column("received_at", Float, nullable=False),
    Column("recommendation_id", String(256), nullable=True),
    Column("context", Text, nullable=True),
    Index("ux_events_event_id", "event_id", unique=True),
)

impressions = Table(
    "impressions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("recommendation_id", String(64), nullable=False, unique=True),
    Column("user_idx", Integer, nullable=True),
    Column("user_id", String(256), nullable=False),
    Column("ts", Float, nullable=False),
    Column("model_version", String(64), nullable=True),
    Column("policy", String(64), nullable=False),
    Column("experiment_id", String(64), nullable=True),
    Column("arm", String(64), nullable=True),
    Column("item_ids", JSON, nullable=False),
    Column("scores", JSON, nullable=False),
    Column("propensities", JSON, nullable=False),
    Column("context", JSON, nullable=True),
)

# What a shadow candidate would have served for a logged request and how far it agreed with the
# champion: serving writes it, the loop's gates and the label triggers read it.
shadow_results = Table(
    "shadow_results",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("recommendation_id", String(64), nullable=False),
    Column("version", String(64), nullable=False),
    Column("ts", Float, nullable=False),
    Column("item_ids", JSON, nullable=False),
    Column("overlap", Float, nullable=False),
    Column("rank_corr", Float, nullable=True),
    Index("ix_shadow_results_version", "version", "ts"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("scope", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
)

ingest_daily = Table(
    "ingest_daily",
    metadata,
    Column("date", String(10), primary_key=True),
    Column("accepted", BigInteger, nullable=False, default=0),
    Column("duplicates", BigInteger, nullable=False, default=0),
    Column("rejected", BigInteger, nullable=False, default=0),
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("watermark", BigInteger, nullable=False),
    Column("n_events", BigInteger, nullable=False),
    Column("n_users", Integer, nullable=False),
    Column("n_items", Integer, nullable=False),
    Column("n_interactions", BigInteger, nullable=False),
    Column("params", JSON, nullable=False),
)

models = Table(
    "models",
    metadata,
    Column("version", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("name", String(64), nullable=False),
    Column("params", JSON, nullable=False),
    Column("metrics", JSON, nullable=False),
    Column("snapshot_id", String(64), nullable=False),
    Column("status", String(16), nullable=False),
    Column("artifact", Text, nullable=False),
    Column("fit_seconds", Float, nullable=False),
    Column("promoted_at", Float, nullable=True),
)

model_transitions = Table(
    "model_transitions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version", String(64), nullable=False),
    Column("from_status", String(16), nullable=True),
    Column("to_status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("ts", Float, nullable=False),
)

# Who did what to whom (erasures, key revocations, automatic rollbacks), never the data itself.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("action", String(64), nullable=False),
    Column("subject", String(128), nullable=False),
    Column("detail", JSON, nullable=False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("holder", String(128), nullable=False),
    Column("expires_at", Float, nullable=False),
)
