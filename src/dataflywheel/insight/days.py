"""Whole UTC days as integers (days since 1970-01-01), in SQL and in Python.

Every rollup is keyed by such a day number; ``day_of`` buckets an epoch-seconds column in SQL the
same way on both dialects (SQLite truncates a positive quotient, PostgreSQL needs ``floor``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Integer
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from dataflywheel.errors import ValidationError

DAY = 86_400
EPOCH = dt.date(1970, 1, 1)
GRAINS = ("day", "week", "month")


class day_of(FunctionElement[int]):
    """``floor(ts / 86400)`` as an integer, for an epoch-seconds column."""

    type = Integer()
    inherit_cache = True
    name = "day_of"


@compiles(day_of)
def _day_of_default(element: day_of, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)} / {DAY}) AS INTEGER)"


@compiles(day_of, "sqlite")
def _day_of_sqlite(element: day_of, compiler: Any, **kw: Any) -> str:
    # Event times are after 1970, so truncation is the floor.
    return f"CAST({compiler.process(element.clauses, **kw)} / {DAY} AS INTEGER)"


def iso(day: int) -> str:
    return (EPOCH + dt.timedelta(days=day)).isoformat()


def parse_day(value: str | None, field: str) -> int | None:
    """A ``YYYY-MM-DD`` query value as a day number; a clear ValidationError otherwise."""
    if value is None or value == "":
        return None
    try:
        date = dt.date.fromisoformat(value)
    except ValueError:
        raise ValidationError(
            f"{field} must be a date as YYYY-MM-DD, got {value!r}", field=field
        ) from None
    return (date - EPOCH).days


def check_grain(grain: str) -> str:
    if grain not in GRAINS:
        raise ValidationError(
            f"grain must be one of {', '.join(GRAINS)}, got {grain!r}", field="grain"
        )
    return grain


def period_start(day: int, grain: str) -> int:
    """The first day of the day's period: itself, its ISO week's Monday, or its month's 1st."""
    if grain == "day":
        return day
    date = EPOCH + dt.timedelta(days=day)
    if grain == "week":
        return day - date.weekday()
    return (date.replace(day=1) - EPOCH).days
