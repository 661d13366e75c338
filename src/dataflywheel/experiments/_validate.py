"""Input checks shared by the experiment statistics; every failure is a ValidationError."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from dataflywheel.errors import ValidationError

_SHARE_TOLERANCE = 1e-6


def sample(values: ArrayLike, field: str, *, min_size: int = 2) -> NDArray[np.float64]:
    """A 1-D float array of finite per-unit values, at least ``min_size`` long."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be an array of numbers", field=field) from exc
    if array.ndim != 1:
        raise ValidationError(f"{field} must be one-dimensional", field=field)
    if array.size < min_size:
        raise ValidationError(
            f"{field} needs at least {min_size} values, got {array.size}", field=field
        )
    if not np.all(np.isfinite(array)):
        raise ValidationError(f"{field} contains NaN or infinite values", field=field)
    return array


def same_length(a: NDArray[np.float64], b: NDArray[np.float64], field: str, other: str) -> None:
    """Paired arrays (a metric and its covariate, numerator and denominator) must align."""
    if a.size != b.size:
        raise ValidationError(
            f"{field} has {b.size} values but {other} has {a.size}; they must be paired per unit",
            field=field,
        )


def probability(value: float, field: str) -> float:
    """A level such as alpha or power: strictly between 0 and 1."""
    if not isinstance(value, int | float) or not 0.0 < float(value) < 1.0:
        message = f"{field} must be strictly between 0 and 1, got {value!r}"
        raise ValidationError(message, field=field)
    return float(value)


def positive(value: float, field: str) -> float:
    """A finite number greater than zero (margins, MDEs, standard deviations)."""
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise ValidationError(f"{field} must be a positive number, got {value!r}", field=field)
    return float(value)


def shares(weights: Sequence[float], field: str) -> NDArray[np.float64]:
    """Non-negative weights summing to 1 (or to 100, read as percentages), returned as fractions."""
    try:
        array = np.asarray(weights, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{field} must be numbers", field=field) from exc
    if array.ndim != 1 or array.size == 0:
        raise ValidationError(f"{field} must be a non-empty list of weights", field=field)
    if not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValidationError(f"{field} must be finite and non-negative", field=field)
    total = float(array.sum())
    if math.isclose(total, 100.0, abs_tol=100 * _SHARE_TOLERANCE):
        return array / 100.0
    if math.isclose(total, 1.0, abs_tol=_SHARE_TOLERANCE):
        return array
    raise ValidationError(f"{field} must sum to 1 (or 100%), got {total:g}", field=field)
