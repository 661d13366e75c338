"""Whole UTC days as integers (days since 1970-01-01), in Python.

Every rollup is keyed by such a day number; in SQL, ``dataflywheel.store.dialect.day_of``
buckets an epoch-seconds column the same way on both dialects.
"""

from __future__ import annotations

import datetime as dt

from dataflywheel.errors import ValidationError

DAY = 86_400
EPOCH = dt.date(1970, 1, 1)
GRAINS = ("day", "week", "month")


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
