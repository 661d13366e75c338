"""What users do around a pick: the feedback a consumption yields, and whether they come back.

Consumption yields graded signals at rates typical of media products: everyone who opens an item
produces a watch fraction; some skip, a few like, dislike or rate. Engagement (visits, session
length, churn, referrals) follows a satisfaction score that is an average of recent outcomes —
unless the population is inelastic, in which case everyone behaves as if at the baseline.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Engagement", "consume"]


def consume(utility: float, rng: np.random.Generator) -> list[tuple[str, float]]:
    """Signals (type, value) from consuming an item of true ``utility``; the first is the watch."""
    watched = 1.0 / (1.0 + math.exp(-(1.6 * utility - 0.6 + rng.normal(0.0, 0.5))))
    signals = [("watch", round(watched, 3))]
    if watched < 0.25 and rng.random() < 0.7:
        signals.append(("skip", 1.0))
    if watched < 0.2 and rng.random() < 0.15:
        signals.append(("dislike", 1.0))
    if watched > 0.75 and rng.random() < 0.2:
        signals.append(("like", 1.0))
    if rng.random() < 0.05:
        stars = 0.5 + 4.5 * watched + rng.normal(0.0, 0.4)
        signals.append(("rating", float(np.clip(round(stars * 2) / 2, 0.5, 5.0))))
    return signals


@dataclass(frozen=True)
class Engagement:
    """How satisfaction (0..1, an exponential average of outcomes) drives usage."""

    elastic: bool = True
    baseline: float = 0.25
    memory: float = 0.7

    def felt(self, value: float) -> float:
        """The satisfaction or outcome that drives behaviour: the real one only when elastic."""
        return value if self.elastic else self.baseline

    def visit_probability(self, satisfaction: float) -> float:
        """Chance an active user opens the product on a given day."""
        return min(0.9, 0.03 + 0.6 * self.felt(satisfaction))

    def continue_probability(self, outcome: float) -> float:
        """Chance of another request in the session after one with this ``outcome``."""
        return 0.2 + 0.55 * self.felt(outcome)

    def churn_probability(self, satisfaction: float) -> float:
        """Chance of leaving for good after a visit."""
        return 0.06 * (1.0 - self.felt(satisfaction)) ** 2

    def referral_probability(self, session_score: float) -> float:
        """Chance a session brings a new user tomorrow (word of mouth)."""
        return 0.04 * self.felt(session_score)

    def update(self, satisfaction: float, session_score: float) -> float:
        return self.memory * satisfaction + (1.0 - self.memory) * session_score
