"""Vowpal Wabbit learner: ``--cb_explore_adf`` on the same JSON features as the linear learners.

The default settings are Azure Personalizer's (``--cb_explore_adf --epsilon 0.2 --cb_type mtr
-q ::``). Context features go to namespace ``c`` (the shared example) and action features to
namespace ``a``; VW returns a probability per action, the served action is drawn from it
(after the common minimum-probability floor) and learning uses ``0:cost:probability`` on the
served action's line with ``cost = -reward``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import vowpalwabbit

from dataflywheel.errors import ModelError

from .features import Features, parse_request
from .learner import Learner, LearnerConfig

MODEL_FILE = "model.vw"
_ESCAPE = str.maketrans({" ": "_", "\t": "_", "\n": "_", "|": "/", ":": ";"})


def vw_arguments(config: LearnerConfig, *, seed: bool = True) -> str:
    """The VW command line of a configuration (without ``--quiet`` and model paths).

    A saved model carries its own random state, so loading one passes ``seed=False``.
    """
    explore = {
        "epsilon": f"--epsilon {config.epsilon}",
        "squarecb": f"--squarecb --gamma_scale {config.gamma_scale}",
        "bag": f"--bag {config.bag} --epsilon {config.epsilon}",
        "cover": f"--cover {config.cover}",
        "softmax": f"--softmax --lambda {config.softmax_lambda}",
    }[str(config.exploration)]
    return (
        f"--cb_explore_adf {explore} --cb_type {config.cb_type} -q {config.interactions} "
        f"-b {config.bits}" + (f" --random_seed {config.seed}" if seed else "")
    )


class VWLearner(Learner):
    """A contextual bandit backed by an in-process ``vowpalwabbit.Workspace``."""

    kind = "vw"

    def __init__(self, config: LearnerConfig) -> None:
        super().__init__(config)
        self.arguments = vw_arguments(config)
        self.workspace = vowpalwabbit.Workspace(self.arguments, quiet=True)
        self._names: dict[str, str] = {}

    def _tokens(self, features: Features) -> str:
        """VW text for one namespace's features (names escaped once and memoised)."""
        names = self._names
        out = []
        for name, value in zip(features.names, features.values, strict=True):
            token = names.get(name)
            if token is None:
                token = names[name] = name.translate(_ESCAPE)
            out.append(f"{token}:{value}")
        return " ".join(out)

    def _lines(self, context: Any, actions: Sequence[Any]) -> tuple[list[str], list[str]]:
        req = parse_request(context, actions, id_feature=self.config.id_feature)
        lines = [f"shared |c {self._tokens(req.context)}"]
        lines += [f"|a {self._tokens(a)}" for a in req.actions]
        return req.action_ids, lines

    def _floor(self, n_actions: int) -> float:
        """VW explores by itself; only the minimum-probability floor is added."""
        return min(n_actions * self.config.min_probability, 1.0)

    def _policy(
        self, context: Any, actions: Sequence[Any]
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        ids, lines = self._lines(context, actions)
        probs = np.asarray(self.workspace.predict(lines), dtype=np.float64)
        return ids, probs, probs

    def _learn(
        self, context: Any, actions: Sequence[Any], chosen: int, probability: float, reward: float
    ) -> None:
        _, lines = self._lines(context, actions)
        lines[chosen + 1] = f"0:{-reward}:{probability} {lines[chosen + 1]}"
        self.workspace.learn(lines)

    def _save_model(self, path: Path) -> None:
        self.workspace.save(str(path / MODEL_FILE))

    def _load_model(self, path: Path) -> None:
        model = path / MODEL_FILE
        if not model.is_file():
            raise ModelError(f"no VW model in {path}")
        self.workspace.finish()
        arguments = vw_arguments(self.config, seed=False)
        self.workspace = vowpalwabbit.Workspace(f"{arguments} -i {model}", quiet=True)
