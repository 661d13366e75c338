"""Which item of a served list a user picks: a position-biased multinomial logit with no-click.

The user looks at position ``p`` (0-based) with probability ``(p + 1) ** -decay`` (people read
from the top), then picks one of the examined items or nothing with probabilities proportional to
``exp(appeal)``, the no-click option having a fixed appeal. So the same item is picked more often
near the top, and a list of unappealing items is mostly ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["ChoiceModel"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class ChoiceModel:
    """Examination decay over positions, logit temperature and the appeal of not clicking."""

    decay: float = 0.7
    temperature: float = 0.7
    no_click_appeal: float = 2.0

    def examination(self, k: int) -> FloatArray:
        """Probability of examining each of ``k`` positions."""
        return np.asarray((np.arange(k) + 1.0) ** -self.decay, dtype=np.float64)

    def probabilities(self, appeal: FloatArray, examined: NDArray[np.bool_]) -> FloatArray:
        """P(pick position p) for each position given which were examined; the rest is no-click."""
        logits = np.append(np.where(examined, appeal, -np.inf), self.no_click_appeal)
        weights = np.exp((logits - logits.max()) / self.temperature)
        return np.asarray(weights[:-1] / weights.sum(), dtype=np.float64)

    def choose(self, appeal: FloatArray, rng: np.random.Generator) -> int | None:
        """The picked position of a list whose items have ``appeal`` (best first), or None."""
        examined = rng.random(appeal.size) < self.examination(appeal.size)
        probs = self.probabilities(appeal, examined)
        draw = rng.random()
        cumulative = np.cumsum(probs)
        position = int(np.searchsorted(cumulative, draw, side="right"))
        return position if position < appeal.size else None
