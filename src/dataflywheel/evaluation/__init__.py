"""Evaluation, usable on its own: ranking metrics, temporal splits, off-policy estimators."""

from __future__ import annotations

from dataflywheel.evaluation.ope import Estimate, off_policy
from dataflywheel.evaluation.ranking import (
    coverage,
    map_at_k,
    ndcg_at_k,
    novelty,
    ranking_metrics,
    recall_at_k,
)
from dataflywheel.evaluation.splits import global_time_cut, per_user_temporal

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
