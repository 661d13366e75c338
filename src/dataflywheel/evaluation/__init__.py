"""Evaluation, usable on its own: ranking metrics, temporal splits, off-policy estimators."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dataflywheel.evaluation.ranking import (
    coverage,
    map_at_k,
    ndcg_at_k,
    novelty,
    ranking_metrics,
    recall_at_k,
)
from dataflywheel.evaluation.splits import global_time_cut, per_user_temporal

if TYPE_CHECKING:
    from dataflywheel.evaluation.ope import Estimate, off_policy

__all__ = [
    "Estimate",
    "coverage",
    "global_time_cut",
    "map_at_k",
    "ndcg_at_k",
    "novelty",
    "off_policy",
    "per_user_temporal",
    "ranking_metrics",
    "recall_at_k",
]


def __getattr__(name: str) -> Any:
    """Off-policy estimators load scikit-learn: imported on first use, so training and the CLI
    start without it."""
    if name in ("Estimate", "off_policy"):
        from dataflywheel.evaluation import ope

        return getattr(ope, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
