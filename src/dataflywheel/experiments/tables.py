"""Experiment tables, on the store's shared ``metadata``.

``experiments`` holds each test's design and outcome; ``interleaving_teams`` the team of every
position of an interleaved list (credit needs it). ``shadow_results`` lives in
:mod:`dataflywheel.store.schema`: serving writes it, the loop and the label triggers read it.
"""

from __future__ import annotations

from sqlalchemy import JSON, Column, Float, Index, Integer, String, Table, Text

from dataflywheel.store.schema import metadata

experiments = Table(
    "experiments",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("arms", JSON, nullable=False),
    Column("metric", String(32), nullable=False),
    Column("guardrails", JSON, nullable=False),
    Column("min_sample_size", Integer, nullable=False),
    Column("salt", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("stopped_at", Float, nullable=True),
    Column("decision", JSON, nullable=True),
    Column("reason", Text, nullable=True),
    Index("ix_experiments_status", "status"),
)

interleaving_teams = Table(
    "interleaving_teams",
    metadata,
    Column("recommendation_id", String(64), primary_key=True),
    Column("experiment_id", String(32), nullable=False),
    Column("teams", JSON, nullable=False),
    Index("ix_interleaving_teams_experiment", "experiment_id"),
)
