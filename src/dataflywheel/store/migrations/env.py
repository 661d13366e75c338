"""Alembic environment: runs on the connection handed over by dataflywheel.store.migrate."""

from __future__ import annotations

from alembic import context

# Importing the table modules registers every table on the shared metadata.
from dataflywheel.decide import tables as decide_tables
from dataflywheel.experiments import tables as experiment_tables
from dataflywheel.insight import tables as insight_tables
from dataflywheel.label import tables as label_tables
from dataflywheel.store.schema import metadata

TABLE_MODULES = (decide_tables, experiment_tables, insight_tables, label_tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through dataflywheel.store.migrate.upgrade()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
