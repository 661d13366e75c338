"""Apprentice mode: serve the baseline action, learn from its rewards, measure agreement.

As in Azure Personalizer, the baseline is the first action of each request. The wrapped learner
learns as if the baseline were the logging policy (propensity 1) and, before each update, is asked
for its own top choice; the share of recent rewarded rounds where that choice equals the baseline
is :attr:`Apprentice.agreement`, which the caller compares with a threshold (Personalizer used
60–80%) to switch to online mode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from .learner import Encoding, Learner, Ranking, Seed

BASELINE = 0


class Apprentice:
    """Wraps a learner so that it imitates, and is measured against, the baseline action."""

    def __init__(self, learner: Learner, *, window: int = 1000) -> None:
        self.learner = learner
        self.window = window
        self._agreed: deque[bool] = deque(maxlen=window)
        self._rewards: deque[float] = deque(maxlen=window)

    def rank(self, context: Any, actions: Sequence[Any], *, rng: Seed = None) -> Ranking:
        """Serve the baseline with probability 1; the other actions follow the learner's order."""
        own = self.learner.rank(context, actions, rng=rng)
        baseline_id = actions[BASELINE]["id"]
        ids = [baseline_id, *[a for a in own.action_ids if a != baseline_id]]
        probs = np.zeros(len(ids))
        probs[BASELINE] = 1.0
        return Ranking(tuple(ids), tuple(probs.tolist()), BASELINE, own.greedy_index)

    def learn(
        self,
        context: Any,
        actions: Sequence[Any],
        chosen_index: int,
        probability: float,
        reward: float,
        *,
        encoding: Encoding | None = None,
    ) -> None:
        """Record whether the learner already agrees with the served action, then learn."""
        self._agreed.append(self.learner.best(context, actions) == chosen_index)
        self._rewards.append(float(reward))
        self.learner.learn(context, actions, chosen_index, probability, reward, encoding=encoding)

    @property
    def rounds(self) -> int:
        """Rewarded rounds in the current window."""
        return len(self._agreed)

    @property
    def agreement(self) -> float:
        """Share of the window's rounds where the learner's own choice was the baseline."""
        return sum(self._agreed) / len(self._agreed) if self._agreed else 0.0

    @property
    def baseline_reward(self) -> float:
        """Mean reward of the baseline over the window."""
        return sum(self._rewards) / len(self._rewards) if self._rewards else 0.0

    @property
    def learner_reward_bounds(self) -> tuple[float, float]:
        """Bounds on the mean reward the learner would have got over the window.

        Where it agreed, it would have got the baseline's reward; elsewhere the reward is
        unobserved, so it is bounded by Personalizer's reward range [0, 1].
        """
        if not self._rewards:
            return 0.0, 1.0
        got = sum(r for r, a in zip(self._rewards, self._agreed, strict=True) if a)
        unseen = len(self._agreed) - sum(self._agreed)
        return got / len(self._rewards), (got + unseen) / len(self._rewards)

    def ready(self, threshold: float = 0.7) -> bool:
        """True once a full window shows agreement at or above ``threshold``."""
        return self.rounds >= self.window and self.agreement >= threshold
