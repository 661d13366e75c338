"""Flywheel health: one module per condition, each with its thresholds; :mod:`.verdict`
combines them into the ``GET /v1/health/flywheel`` object."""

from __future__ import annotations

from dataflywheel.insight.health.common import Condition, Status, two_proportions
from dataflywheel.insight.health.verdict import assess, health

__all__ = ["Condition", "Status", "assess", "health", "two_proportions"]
