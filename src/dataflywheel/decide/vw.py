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

from .features import Features, JsonCache, parse_actions, parse_context
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
        self._actions = JsonCache(self._action_lines)

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

    def _action_lines(self, actions: Any) -> tuple[list[str], list[str]]:
        ids, feats = parse_actions(actions, id_feature=self.config.id_feature)
        return ids, [f"|a {self._tokens(a)}" for a in feats]

    def _lines(self, context: Any, actions: Sequence[Any]) -> tuple[list[str], list[str]]:
        """Action ids and the example's lines (the action lines are built once per list)."""
        ids, action_lines = self._actions(actions)
        return ids, [f"shared |c {self._tokens(parse_context(context))}", *action_lines]

    def _floor(self, n_actions: int) -> float:
        """VW explores by itself; only the minimum-probability floor is added."""
        return min(n_actions * self.config.min_probability, 1.0)

    def _policy(
        self, context: Any, actions: Sequence[Any]
    ) -> tuple[list[str], npt.NDArray[np.float64], npt.NDArray[np.float64], Any]:
        ids, lines = self._lines(context, actions)
        probs = np.asarray(self.workspace.predict(lines), dtype=np.float64)
        return ids, probs, probs, lines

    def _encode(self, request: Any, index: int) -> Any:
        """The example's lines (the action lines are shared with the cache)."""
        return request

    def _learn(
        self,
        context: Any,
        actions: Sequence[Any],
        chosen: int,
        probability: float,
        reward: float,
        payload: Any,
    ) -> None:
        lines = list(payload) if payload is not None else self._lines(context, actions)[1]
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
        # The path as its own token: VW splits its argument string at spaces.
        self.workspace = vowpalwabbit.Workspace(arguments, arg_list=["-i", str(model)], quiet=True)
