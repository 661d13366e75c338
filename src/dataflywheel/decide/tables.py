"""The decision service's tables, on the store's shared ``metadata`` so both dialects get them.

``decision_deployments`` holds each deployment's learner settings and Personalizer-style service
configuration, with a ``revision`` every replica compares to see changes and ``learner_seq``, the
sequence from which the current learner learned; ``decision_events`` is the decision log: one
row per rank decision (one per slot for multi-slot ranks) with the request, the exact
probabilities, the served action, what became of it (reward, default reward, never activated)
and its ``deadline``. The log is what
off-policy evaluation reads, what rebuilds a learner's last minutes after a crash and what
replicas follow to keep their learner current. ``decision_inbox`` holds rewards and activations
received by a replica that does not own learning, until the owner applies them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, String, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from dataflywheel.store.schema import BigId, metadata

_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


class LogJSON(TypeDecorator[Any]):
    """A JSON column written with orjson: every logged decision serialises its request, and the
    standard library's encoder made that the log writer's main cost. Values orjson cannot
    encode fall back to the standard encoder; the stored text and what reads it are unchanged."""

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Callable[[Any], str | None]:
        def process(value: Any) -> str | None:
            if value is None:
                return None
            try:
                return orjson.dumps(value, option=_ORJSON).decode()
            except TypeError:
                return json.dumps(value)

        return process


deployments = Table(
    "decision_deployments",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("learner", JSON, nullable=False),
    Column("service", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revision", BigInteger, nullable=False, server_default="0"),
    Column("learner_seq", BigInteger, nullable=True),
)

decisions = Table(
    "decision_events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("deployment", String(64), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("slot_id", String(256), nullable=False),
    Column("ts", Float, nullable=False),
    Column("mode", String(16), nullable=False),
    Column("request", LogJSON, nullable=False),
    Column("action_ids", LogJSON, nullable=False),
    Column("probabilities", LogJSON, nullable=False),
    Column("chosen_index", Integer, nullable=False),
    Column("chosen_id", String(256), nullable=False),
    Column("deferred", Boolean, nullable=False),
    Column("activated_at", Float, nullable=True),
    Column("reward", Float, nullable=True),
    Column("reward_at", Float, nullable=True),
    Column("rewards", Integer, nullable=False),
    Column("late_rewards", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("learned_at", Float, nullable=True),
    Column("learned_seq", BigInteger, nullable=True),
    Column("deadline", Float, nullable=True),
    Index("ux_decision_events_event", "deployment", "event_id", "slot_id", unique=True),
    Index("ix_decision_events_outcome", "deployment", "outcome"),
    Index("ix_decision_events_ts", "deployment", "ts"),
    Index("ix_decision_events_deadline", "deployment", "outcome", "deadline"),
    Index("ix_decision_events_learned", "deployment", "learned_seq"),
)

inbox = Table(
    "decision_inbox",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("deployment", String(64), nullable=False),
    Column("event_id", String(256), nullable=False),
    Column("slot_id", String(256), nullable=True),
    Column("kind", String(16), nullable=False),
    Column("value", Float, nullable=True),
    Column("at", Float, nullable=False),
)
