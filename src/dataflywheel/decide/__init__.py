"""Contextual bandits: one choice among actions, with exact propensities (Personalizer-style).

Pure and in-process: features from Personalizer JSON requests, built-in linear Thompson
sampling and LinUCB, a Vowpal Wabbit learner, and apprentice mode.
"""

from __future__ import annotations

from .apprentice import Apprentice
from .features import MAX_ACTIONS, FeatureHasher, parse_request
from .learner import Learner, LearnerConfig, LearnerState, Ranking, create_learner, load_learner

__all__ = [
    "MAX_ACTIONS",
    "Apprentice",
    "FeatureHasher",
    "Learner",
    "LearnerConfig",
    "LearnerState",
    "Ranking",
    "create_learner",
    "load_learner",
    "parse_request",
]
