"""Statistics of experiments: A/B analysis (t-test, CUPED, always-valid sequential), ratio
metrics, guardrails, SRM, power, hash assignment and team-draft interleaving.

Pure numpy/scipy on per-unit arrays; the store and the loop feed these functions.
"""

from __future__ import annotations

from dataflywheel.experiments.analysis import AnalysisResult, analyze
from dataflywheel.experiments.assignment import assign, assign_many, bucket, buckets
from dataflywheel.experiments.guardrail import GuardrailResult, non_inferiority
from dataflywheel.experiments.interleaving import (
    InterleavingResult,
    credit,
    interleaving_sample_size,
    preference_test,
    team_draft,
)
from dataflywheel.experiments.power import power, sample_size
from dataflywheel.experiments.ratio import ratio_metric
from dataflywheel.experiments.sequential import confidence_sequence
from dataflywheel.experiments.srm import SRMResult, srm

__all__ = [
    "AnalysisResult",
    "GuardrailResult",
    "InterleavingResult",
    "SRMResult",
    "analyze",
    "assign",
    "assign_many",
    "bucket",
    "buckets",
    "confidence_sequence",
    "credit",
    "interleaving_sample_size",
    "non_inferiority",
    "power",
    "preference_test",
    "ratio_metric",
    "sample_size",
    "srm",
    "team_draft",
]
