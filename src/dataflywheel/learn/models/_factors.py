"""Shared helpers for the matrix-factorisation models built on ``implicit``."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["cosine_to", "thread_count"]


def thread_count() -> int:
    """Threads for implicit's solvers: every core, which is what the machine has for training."""
    return os.cpu_count() or 1


def cosine_to(item_factors: np.ndarray, item_id: int) -> np.ndarray:
    """Cosine similarity of every item's factor to one item's factor."""
    norms = np.linalg.norm(item_factors, axis=1) + 1e-12
    result: np.ndarray = (item_factors @ item_factors[item_id]) / (norms * norms[item_id])
    return result
