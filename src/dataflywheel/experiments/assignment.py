"""Deterministic, salted hash assignment of units to experiment arms.

The same unit id and salt always land in the same arm, in any process, on any machine and in any
Python version (no ``hash()``, no global random state), so assignment needs no lookup table.
A new salt per experiment makes assignments independent across experiments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np
from numpy.typing import NDArray

from dataflywheel.errors import ValidationError
from dataflywheel.experiments import _validate

_SCALE = float(2**64)


def bucket(unit_id: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by (salt, unit id): the first 8 bytes of BLAKE2b."""
    # Length-prefixing the salt keeps ("ab", "c") and ("a", "bc") apart.
    message = f"{len(salt)}:{salt}{unit_id}".encode()
    digest = hashlib.blake2b(message, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def buckets(unit_ids: Iterable[str], salt: str) -> NDArray[np.float64]:
    """:func:`bucket` for many unit ids at once."""
    return np.fromiter((bucket(str(u), salt) for u in unit_ids), dtype=np.float64)


def assign(unit_id: str, salt: str, arms: Sequence[tuple[str, float]]) -> str:
    """The arm of ``unit_id``; ``arms`` are (name, weight) with weights summing to 1 or 100."""
    names, edges = _arm_edges(arms)
    return names[int(np.searchsorted(edges, bucket(unit_id, salt), side="right"))]


def assign_many(
    unit_ids: Iterable[str], salt: str, arms: Sequence[tuple[str, float]]
) -> NDArray[np.str_]:
    """The arm of every unit id, as a string array aligned with ``unit_ids``."""
    names, edges = _arm_edges(arms)
    index = np.searchsorted(edges, buckets(unit_ids, salt), side="right")
    return np.asarray(names)[index]


def _arm_edges(arms: Sequence[tuple[str, float]]) -> tuple[list[str], NDArray[np.float64]]:
    """Arm names and the upper bucket edge of every arm but the last."""
    try:
        names = [str(name) for name, _ in arms]
        weights = [weight for _, weight in arms]
    except (TypeError, ValueError) as exc:
        raise ValidationError("arms must be (name, weight) pairs", field="arms") from exc
    if len(set(names)) != len(names) or any(not name for name in names):
        raise ValidationError("arm names must be unique and non-empty", field="arms")
    shares = _validate.shares(weights, "arms")
    # Zero-weight arms get an empty interval; the last edge is implicit so rounding cannot
    # leave a sliver of [0, 1) unassigned.
    edges = np.cumsum(shares)[:-1]
    return names, edges
